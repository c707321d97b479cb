"""Validate a site's frame with a GX 1.x suite built from the domain's expectations."""

import json
import threading
from collections.abc import Sequence
from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.core.expectation_validation_result import ExpectationValidationResult
from great_expectations.data_context.types.base import ProgressBarsConfig

from fedflow.expectations import Expectation
from fedflow.validation_summary import CheckResult, ValidationSummary
from validation.file_checks import frame_checks, unique_columns

# GX's ephemeral context is process-wide state and not documented as thread-safe, while sites
# validate concurrently in simulation; one lock keeps them in turn.
_LOCK = threading.Lock()
_CONTEXT: Any = None


def _context() -> Any:
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = gx.get_context(mode="ephemeral")
        _CONTEXT.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return _CONTEXT


def _gx_class(expectation_type: str) -> type:
    class_name = "".join(part.capitalize() for part in expectation_type.split("_"))
    cls = getattr(gx.expectations, class_name, None)
    if cls is None:
        raise ValueError(f"unknown Great Expectations expectation {expectation_type!r}")
    return cls  # type: ignore[no-any-return]


def build_suite(name: str, expectations: Sequence[Expectation]) -> gx.ExpectationSuite:
    """A GX ExpectationSuite holding one GX expectation per declared `Expectation`."""
    _context()  # GX binds suites to the active context
    built: dict[str, Any] = {}
    for expectation in expectations:
        kwargs = {k: v for k, v in expectation.kwargs.items() if v is not None}
        # GX keeps one of each check (whatever its meta); keyed here, so the suite is built in one
        # pass instead of `add_expectation` comparing each new check with all the others.
        key = json.dumps([expectation.type, kwargs], sort_keys=True, default=str)
        meta = {"fedflow_label": expectation.label} if expectation.label else None
        built.setdefault(key, _gx_class(expectation.type)(**kwargs, meta=meta))
    return gx.ExpectationSuite(name=name, expectations=list(built.values()))


def _error_of(exception_info: dict[str, Any]) -> str | None:
    """A short reason when GX could not compute a check; never the exception text (it may quote data)."""
    infos = [exception_info] if "raised_exception" in exception_info else list(exception_info.values())
    messages = [
        str(i.get("exception_message", ""))
        for i in infos
        if isinstance(i, dict) and i.get("raised_exception")
    ]
    if not messages:
        return None
    if any("does not exist" in m for m in messages):
        return "column is missing"
    return "check could not run on this column (wrong type?)"


def _check_result(result: ExpectationValidationResult) -> CheckResult:
    config = result.expectation_config
    kwargs = config.kwargs if config is not None else {}
    details = result.result or {}
    error = _error_of(result.exception_info or {})
    observed = details.get("observed_value")
    counts_rows = config is not None and config.type == _ROW_COUNT
    label = (config.meta or {}).get("fedflow_label") if config is not None else None
    return CheckResult(
        expectation=config.type if config is not None else "unknown",
        label=_row_bounds(kwargs) if counts_rows else label,
        column=kwargs.get("column"),
        success=bool(result.success),
        # The table's row count is a count, safe to report; other observed values can be raw data.
        element_count=observed if counts_rows and isinstance(observed, int) else details.get("element_count"),
        unexpected_count=details.get("unexpected_count"),
        unexpected_percent=details.get("unexpected_percent"),
        # Only dtype names are reported as observed values: other observations can be raw data.
        observed_type=str(observed) if config is not None and config.type.endswith("type_list") else None,
        error=error,
    )


# Building a suite costs O(expectations^2) in GX (each addition is compared with the others):
# build it, and its in-memory data asset, once per process and suite, and only swap the frame.
_PREPARED: dict[tuple[str, str], tuple[gx.ExpectationSuite, Any]] = {}
_SOURCE: Any = None


def _prepared(suite_name: str, expectations: Sequence[Expectation]) -> tuple[gx.ExpectationSuite, Any]:
    key = (
        suite_name,
        json.dumps([(e.type, e.kwargs, e.label) for e in expectations], sort_keys=True, default=str),
    )
    if key not in _PREPARED:
        suite = build_suite(suite_name, expectations)
        global _SOURCE
        if _SOURCE is None:  # one data source; re-adding it would drop the assets it holds
            _SOURCE = _context().data_sources.add_or_update_pandas("fedflow-sites")
        asset = _SOURCE.add_dataframe_asset(name=f"{suite_name}-{len(_PREPARED)}")
        _PREPARED[key] = (suite, asset.add_batch_definition_whole_dataframe("whole"))
    return _PREPARED[key]


def validate_frame(
    frame: pd.DataFrame,
    expectations: Sequence[Expectation],
    *,
    site: str,
    suite_name: str,
) -> ValidationSummary:
    """Run the file checks and the suite on `frame`; reduce them to a summary without raw values."""
    file_checks = frame_checks(frame, _columns_of(expectations))
    with _LOCK:
        suite, batch_definition = _prepared(suite_name, expectations)
        batch = batch_definition.get_batch(batch_parameters={"dataframe": unique_columns(frame)})
        result = batch.validate(suite, result_format="BASIC")  # counts; SUMMARY adds value counts
    checks = file_checks + [_check_result(r) for r in result.results]
    success = bool(result.success) and all(c.success for c in file_checks)
    return ValidationSummary(site=site, success=success, rows=len(frame), checks=checks)


def _columns_of(expectations: Sequence[Expectation]) -> list[str]:
    """The columns the domain's checks name (the file checks look at those, not at extra ones)."""
    return [e.column for e in expectations if e.column is not None]


_ROW_COUNT = "expect_table_row_count_to_be_between"


def _row_bounds(kwargs: Any) -> str:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None and high is not None:
        return f"{low} to {high} rows"
    return f"at least {low} rows" if low is not None else f"at most {high} rows"


def _row_count_check(expectation: Expectation, rows: int) -> CheckResult:
    low, high = expectation.kwargs.get("min_value"), expectation.kwargs.get("max_value")
    success = (low is None or rows >= low) and (high is None or rows <= high)
    return CheckResult(
        expectation=_ROW_COUNT, label=_row_bounds(expectation.kwargs), success=success, element_count=rows
    )


# Checks that hold for every site when they hold for all sites' rows together: strictly per row
# (or per column dtype, with identical dtypes), and without `mostly` (a share, not every row).
_PER_ROW = frozenset(
    {
        "expect_column_to_exist",
        "expect_column_values_to_be_in_type_list",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_null",
    }
)


def _per_row(expectation: Expectation) -> bool:
    return expectation.type in _PER_ROW and expectation.kwargs.get("mostly") in (None, 1, 1.0)


def validate_frames(
    frames: dict[str, pd.DataFrame], expectations: Sequence[Expectation], *, suite_name: str
) -> dict[str, ValidationSummary]:
    """Validate many sites' frames (simulation: many clients) with one GX run of the per-row checks.

    When every frame has the same columns and dtypes and all rows together pass every strictly
    per-row check, each site passes them too: its summary reports them passed with its own row
    count. Checks over a whole column (a mean, a share with `mostly`) still run site by site, and
    the table row-count check is evaluated per site. If the joint run fails (or the frames differ
    in shape), every site is validated on its own, so a failure is attributed to the right site.
    """

    def alone(site: str, frame: pd.DataFrame) -> ValidationSummary:
        return validate_frame(frame, expectations, site=site, suite_name=suite_name)

    if len(frames) <= 1:
        return {site: alone(site, frame) for site, frame in frames.items()}
    first = next(iter(frames.values()))
    same_shape = all(
        list(f.columns) == list(first.columns) and list(f.dtypes) == list(first.dtypes)
        for f in frames.values()
    )
    per_row = [e for e in expectations if _per_row(e)]
    per_site = [e for e in expectations if not _per_row(e) and e.type != _ROW_COUNT]
    file_checks = {site: frame_checks(frame, _columns_of(expectations)) for site, frame in frames.items()}
    if not same_shape or not per_row or not all(c.success for cs in file_checks.values() for c in cs):
        return {site: alone(site, frame) for site, frame in frames.items()}
    joint = validate_frame(
        pd.concat(list(frames.values()), ignore_index=True), per_row, site="(batch)", suite_name=suite_name
    )
    if not joint.success:
        return {site: alone(site, frame) for site, frame in frames.items()}
    out = {}
    for site, frame in frames.items():
        checks = file_checks[site] + [
            CheckResult(
                expectation=e.type,
                label=e.label,
                column=e.column,
                success=True,
                element_count=len(frame),
                unexpected_count=0,
                unexpected_percent=0.0,
            )
            for e in per_row
        ]
        checks += [_row_count_check(e, len(frame)) for e in expectations if e.type == _ROW_COUNT]
        if per_site:
            checks += validate_frame(frame, per_site, site=site, suite_name=f"{suite_name}-per-site").checks
        out[site] = ValidationSummary(
            site=site, success=all(c.success for c in checks), rows=len(frame), checks=checks
        )
    return out
