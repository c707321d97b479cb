"""Finance data contract: checks added to those derived from config.yaml: lending sanity checks."""

from fedflow.domain import DomainSpec
from fedflow.expectations import Expectation


def extra_expectations(spec: DomainSpec) -> list[Expectation]:
    """What a lender's loan file must satisfy before it trains."""
    return [
        # Loan terms are always recorded; a blank means a broken export.
        Expectation("expect_column_values_to_not_be_null", {"column": "funded_amnt"}),
        Expectation("expect_column_values_to_not_be_null", {"column": "int_rate"}),
        Expectation("expect_column_values_to_not_be_null", {"column": "term"}),
        # A file that reports almost no bad loans is more likely mislabelled than a perfect book.
        Expectation(
            "expect_column_distinct_values_to_contain_set", {"column": "Class", "value_set": ["good", "bad"]}
        ),
    ]
