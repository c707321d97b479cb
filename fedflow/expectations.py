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
    target = spec.target
    checks.append(Expectation("expect_column_values_to_not_be_null", {"column": target.column}))
    if spec.task == "multiclass":
        checks.append(
            Expectation(
                "expect_column_values_to_be_in_set", {"column": target.column, "value_set": target.classes}
            )
        )
    elif spec.task == "regression" or target.positive_above is not None:
        checks.append(
            Expectation(
                "expect_column_values_to_be_in_type_list",
                {"column": target.column, "type_list": NUMERIC_DTYPES},
            )
        )
    if target.min is not None or target.max is not None:
        checks.append(
            Expectation(
                "expect_column_values_to_be_between",
                {"column": target.column, "min_value": target.min, "max_value": target.max},
            )
        )
    return checks
