"""Telecom data contract: checks added to those derived from config.yaml: billing sanity."""

from fedflow.domain import DomainSpec
from fedflow.expectations import Expectation


def extra_expectations(spec: DomainSpec) -> list[Expectation]:
    """What an operator's customer file must satisfy before it trains."""
    return [
        Expectation("expect_column_values_to_not_be_null", {"column": "tenure"}),
        Expectation("expect_column_values_to_not_be_null", {"column": "monthly_charges"}),
        Expectation("expect_column_values_to_not_be_null", {"column": "contract"}),
        # Only customers in their first month may lack a total; allow a small share of blanks.
        Expectation("expect_column_values_to_not_be_null", {"column": "total_charges", "mostly": 0.98}),
    ]
