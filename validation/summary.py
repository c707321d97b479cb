"""What a site tells the coordinator about its data quality: counts, never values."""

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
