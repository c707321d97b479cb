"""Healthcare data contract: the generic checks from config.yaml plus clinical ones."""

from fedflow.domain import DomainSpec
from fedflow.expectations import Expectation, expectations_from_spec


def expectations(spec: DomainSpec) -> list[Expectation]:
    """What a hospital's file must satisfy before it trains."""
    return [
        *expectations_from_spec(spec),
        # Every hospital records these; a blank here means a broken export, not a missing test.
        Expectation("expect_column_values_to_not_be_null", {"column": "age"}),
        Expectation("expect_column_values_to_not_be_null", {"column": "sex"}),
        Expectation("expect_column_values_to_not_be_null", {"column": "cp"}),
    ]
