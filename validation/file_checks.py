"""Checks on a site's frame that catch what would break training, before it costs a round.

Great Expectations checks what the domain declares; these catch what no declaration covers:
a header naming a column twice (pandas silently renames the copy `Income.1`, so the site would
train on the first one), and numbers that are infinite or so large that the shared sums of
squares (the federated preprocessing) would overflow: in every numeric column the checks name,
whether or not it declares a `max`. Results are counts and column names, never row values.
"""

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from fedflow.validation_summary import CheckResult

UNIQUE_NAMES = "fedflow_column_names_are_unique"
SUMMABLE = "fedflow_column_values_are_finite_and_summable"
_FLOAT_MAX = float(np.finfo(np.float64).max)


def summable_limit(rows: int) -> float:
    """The largest |x| whose square, added `rows` times, stays finite in float64 (with a margin)."""
    return math.sqrt(_FLOAT_MAX / max(rows, 1)) / 16


def duplicate_column_checks(names: Sequence[object]) -> list[CheckResult]:
    """One failed check per column the header names more than once; one passed check if none."""
    counts = Counter(str(name) for name in names)
    repeated = [name for name, count in counts.items() if count > 1]
    if not repeated:
        return [_passed(UNIQUE_NAMES, len(names))]
    return [
        CheckResult(
            expectation=UNIQUE_NAMES,
            column=name,
            success=False,
            element_count=len(names),
            unexpected_count=counts[name] - 1,
            error=(
                f"the header names column {name!r} {counts[name]} times (pandas would read the copy as "
                f"{name}.1 and train on the first); rename or remove the copies"
            ),
        )
        for name in repeated
    ]


def summable_checks(frame: pd.DataFrame, columns: Iterable[str]) -> list[CheckResult]:
    """A failed check per numeric column holding inf, -inf or a value too large to sum safely."""
    limit = summable_limit(len(frame))
    names = list(dict.fromkeys(c for c in columns if c in frame.columns))
    failed: list[CheckResult] = []
    for name in names:
        series = frame[name]
        if isinstance(series, pd.DataFrame):  # a repeated name: its first copy (the other is reported)
            series = series.iloc[:, 0]
        if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            continue  # GX's type check reports a text column
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = int((np.abs(values) > limit).sum())  # NaN compares False: missing values are fine
        if bad:
            failed.append(
                CheckResult(
                    expectation=SUMMABLE,
                    column=name,
                    success=False,
                    element_count=len(values),
                    unexpected_count=bad,
                    error=(
                        f"{bad} of {len(values)} rows are infinite or too large to sum (|x| > {limit:.3g}); "
                        "correct or blank them, and declare the column's min and max in config.yaml"
                    ),
                )
            )
    return failed or [_passed(SUMMABLE, len(frame))]


def _passed(expectation: str, count: int) -> CheckResult:
    return CheckResult(expectation=expectation, success=True, element_count=count, unexpected_count=0)


def frame_checks(frame: pd.DataFrame, columns: Iterable[str]) -> list[CheckResult]:
    """The file-level checks of a site's frame, over the `columns` the domain's checks name."""
    return duplicate_column_checks(list(frame.columns)) + summable_checks(frame, columns)


def unique_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with only the first of each repeated column (GX needs unique names)."""
    duplicated = frame.columns.duplicated()
    return frame.loc[:, ~duplicated] if duplicated.any() else frame
