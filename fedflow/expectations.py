"""Data expectations declared without Great Expectations, so domains stay engine-only.

`validation/` turns each `Expectation` into the GX 1.x expectation of the same name.
"""

from dataclasses import dataclass, field
from typing import Any

from fedflow.domain import DomainSpec

# dtype names a numeric column may have, as pandas reports them for CSV and Parquet files.
NUMERIC_DTYPES = [
    *(f"{kind}{bits}" for kind in ("int", "Int", "uint", "UInt") for bits in (8, 16, 32, 64)),
    *(f"{kind}{bits}" for kind in ("float", "Float") for bits in (32, 64)),
    "float16",
]


@dataclass(frozen=True)
class Expectation:
    """One check on a site's frame: a GX expectation type in snake case and its arguments."""

    type: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str | None = None  # what the check means to a person reading a failure ("PII guard: …")

    @property
    def column(self) -> str | None:
        """The column it concerns, if any."""
        value = self.kwargs.get("column")
        return str(value) if value is not None else None


def expectations_from_spec(spec: DomainSpec) -> list[Expectation]:
    """The checks every domain gets from its config: columns, types, ranges, categories, target."""
    checks: list[Expectation] = [
        Expectation("expect_table_row_count_to_be_between", {"min_value": spec.quality.min_rows}),
    ]
    for name in spec.input_columns:
        checks.append(Expectation("expect_column_to_exist", {"column": name}))
    for column in spec.numeric:
        checks.append(
            Expectation(
                "expect_column_values_to_be_in_type_list",
                {"column": column.name, "type_list": NUMERIC_DTYPES},
            )
        )
        if column.min is not None or column.max is not None:
            checks.append(
                Expectation(
                    "expect_column_values_to_be_between",
                    {"column": column.name, "min_value": column.min, "max_value": column.max},
                )
            )
    for categorical in spec.categorical:
        checks.append(
            Expectation(
                "expect_column_values_to_be_in_set",
                {"column": categorical.name, "value_set": list(categorical.categories)},
            )
        )
    required = [c.name for c in spec.numeric if c.required] + [c.name for c in spec.categorical if c.required]
    for name in required:
        checks.append(Expectation("expect_column_values_to_not_be_null", {"column": name}))
    from fedflow.tasks import get_task  # the task kinds build their checks from this module's types

    target = spec.target
    checks.append(Expectation("expect_column_values_to_not_be_null", {"column": target.column}))
    checks += get_task(spec.task).target_expectations(spec)
    if target.min is not None or target.max is not None:
        checks.append(
            Expectation(
                "expect_column_values_to_be_between",
                {"column": target.column, "min_value": target.min, "max_value": target.max},
            )
        )
    return checks


# Text a site must not train on: it would be memorised and could come back out of the model.
PII_PATTERNS: dict[str, str] = {
    "email_address": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    # +44 20 7946 0958, (555) 123-4567, 07700 900 123: 9 to 13 digits with phone separators;
    # not an ISO date (2024-01-15) or a run of short numbers (BP 120/80, 12 30 45).
    "phone_number": r"(?<![\d-])(?!\d{4}-\d{2}-\d{2})(?:\+\s?)?\(?\d(?:[\s.()-]{0,2}\d){8,12}(?!\d)",
    # US social security (123-45-6789), UK national insurance (AB 12 34 56 C), long digit runs (NHS).
    "national_id": r"\b\d{3}-\d{2}-\d{4}\b|\b[A-CEGHJ-PR-TW-Z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]\b|\d{9,}",
}
# Control characters other than tab/newline, and U+FFFD (what a wrong decoding leaves behind).
BROKEN_ENCODING = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]"


def text_expectations(column: str, spec: DomainSpec) -> list[Expectation]:
    """Non-empty texts of bounded length, decoded cleanly, and (by default) free of obvious PII."""
    checks = [
        Expectation(
            "expect_column_value_lengths_to_be_between",
            {"column": column, "min_value": spec.text.min_chars, "max_value": spec.text.max_chars},
        ),
        Expectation(
            "expect_column_values_to_not_match_regex",
            {"column": column, "regex": BROKEN_ENCODING},
            label="control characters or U+FFFD (badly decoded text)",
        ),
    ]
    if spec.text.pii_guard:
        checks += [
            Expectation(
                "expect_column_values_to_not_match_regex",
                {"column": column, "regex": pattern},
                label=f"PII guard: {kind.replace('_', ' ')}",
            )
            for kind, pattern in PII_PATTERNS.items()
        ]
    return checks
