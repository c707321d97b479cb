"""Education data contract: checks added to those derived from config.yaml: score sanity."""

from fedflow.domain import DomainSpec
from fedflow.expectations import Expectation


def extra_expectations(spec: DomainSpec) -> list[Expectation]:
    """What a group of schools' pupil file must satisfy before it trains."""
    return [
        Expectation("expect_column_values_to_not_be_null", {"column": "standLRT"}),
        Expectation("expect_column_values_to_not_be_null", {"column": "intake"}),
        # Scores are standardised: a mean far from 0 means the site sent raw marks.
        Expectation(
            "expect_column_mean_to_be_between", {"column": "normexam", "min_value": -1.5, "max_value": 1.5}
        ),
    ]
