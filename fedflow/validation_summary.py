"""What a site tells the coordinator about its data quality: counts, never values.

The checks themselves run in `validation/` (Great Expectations); these types are what crosses
the site boundary, so the engine's messages carry them.
"""

from typing import Any

import numpy as np
from pydantic import BaseModel, Field


class CheckResult(BaseModel):
    """The outcome of one expectation, reduced to counts (GX results carry raw values)."""

    expectation: str
    label: str | None = Field(default=None, description="what the check means, when the domain says")
    column: str | None = None
    success: bool
    element_count: int | None = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    observed_type: str | None = Field(default=None, description="dtype name, for type checks only")
    error: str | None = Field(default=None, description="why the check could not run")

    def describe(self) -> str:
        """One human line, e.g. `expect_column_values_to_be_between(age): 3 of 120 rows unexpected`."""
        where = f"({self.column})" if self.column else ""
        meaning = f" ({self.label})" if self.label else ""
        return f"{self.expectation}{where}{meaning}: {self.detail()}"

    def detail(self) -> str:
        """What went wrong, without naming the check (e.g. `3 of 120 rows unexpected`)."""
        if self.error:
            detail = self.error
        elif self.unexpected_count is not None:
            detail = f"{self.unexpected_count} of {self.element_count} rows unexpected"
        elif self.observed_type is not None:
            detail = f"observed type {self.observed_type}"
        elif self.expectation == "expect_column_to_exist":
            detail = "column is missing"
        elif self.expectation == "expect_table_row_count_to_be_between" and self.element_count is not None:
            detail = f"the file has {self.element_count} rows"
        else:
            detail = "failed"
        return detail


class ValidationSummary(BaseModel):
    """A site's validation outcome as it crosses the site boundary."""

    site: str
    success: bool
    rows: int
    checks: list[CheckResult] = Field(default_factory=list)
    error: str | None = Field(default=None, description="set when the data could not be read at all")

    @property
    def failures(self) -> list[CheckResult]:
        """The checks that failed."""
        return [check for check in self.checks if not check.success]

    def reasons(self) -> list[str]:
        """Why the site failed, one line per reason."""
        lines = [self.error] if self.error else []
        return lines + [check.describe() for check in self.failures]

    def compact(self) -> dict[str, Any]:
        """The summary for a reader: the failed checks first, each with what went wrong, then the
        passing ones; no empty fields (the full model is mostly nulls)."""
        out: dict[str, Any] = {"site": self.site, "success": self.success, "rows": self.rows}
        if self.error:
            out["error"] = self.error
        out["failed"] = [
            {**check.model_dump(include=_NAMING, exclude_none=True), "detail": check.detail()}
            for check in self.failures
        ]
        out["passed"] = [_passed(check) for check in self.checks if check.success]
        return out


_NAMING = {"expectation", "column", "label"}


def _passed(check: CheckResult) -> dict[str, Any]:
    """A passing check by name; its counts only when some rows were allowed through (`mostly`)."""
    shown = check.model_dump(include=_NAMING | {"observed_type"}, exclude_none=True)
    if check.unexpected_count:
        shown["unexpected_count"] = check.unexpected_count
        shown["element_count"] = check.element_count
    return shown


def failure_summary(site: str, reason: str) -> ValidationSummary:
    """The summary of a site whose data could not even be read."""
    return ValidationSummary(site=site, success=False, rows=0, error=reason)


def class_minimum_check(labels: np.ndarray, minimum: int) -> CheckResult:
    """Every class of the derived labels has at least `minimum` rows (GX has no such check).

    A site with a handful of minority rows cannot train or evaluate that class; it reports how
    many classes fall short, not which ones or how many rows each has.
    """
    _, counts = np.unique(labels, return_counts=True)
    short = int((counts < minimum).sum()) + (1 if len(counts) < 2 else 0)
    return CheckResult(
        expectation="fedflow_min_rows_per_class",
        column="(label)",
        success=short == 0,
        element_count=len(counts),
        unexpected_count=short,
        error=None if short == 0 else f"{short} class(es) with fewer than {minimum} rows (or only one class)",
    )


def with_check(summary: ValidationSummary, check: CheckResult) -> ValidationSummary:
    """The summary with one more check (and its outcome) added."""
    return summary.model_copy(
        update={"checks": [*summary.checks, check], "success": summary.success and check.success}
    )
