"""Healthcare data contract: checks added to those derived from config.yaml: clinical ones."""

from fedflow.domain import DomainSpec
from fedflow.expectations import Expectation


def extra_expectations(spec: DomainSpec) -> list[Expectation]:
    """What a hospital's file must satisfy before it trains."""
    return [
        # Every hospital records these; a blank here means a broken export, not a missing test.
        Expectation("expect_column_values_to_not_be_null", {"column": "age"}),
        Expectation("expect_column_values_to_not_be_null", {"column": "sex"}),
        Expectation("expect_column_values_to_not_be_null", {"column": "cp"}),
    ]
