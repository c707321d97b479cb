"""Retail data contract: checks added to those derived from config.yaml: price sanity."""

from fedflow.domain import DomainSpec
from fedflow.expectations import Expectation


def extra_expectations(spec: DomainSpec) -> list[Expectation]:
    """What a store's purchase file must satisfy before it trains."""
    return [
        Expectation("expect_column_values_to_not_be_null", {"column": "PriceCH"}),
        Expectation("expect_column_values_to_not_be_null", {"column": "PriceMM"}),
        # A sale price above the list price means the columns were swapped in the export.
        Expectation(
            "expect_column_pair_values_a_to_be_greater_than_b",
            {"column_A": "PriceCH", "column_B": "SalePriceCH", "or_equal": True},
        ),
        Expectation(
            "expect_column_pair_values_a_to_be_greater_than_b",
            {"column_A": "PriceMM", "column_B": "SalePriceMM", "or_equal": True},
        ),
    ]
