"""Validate a site's frame with a GX 1.x suite built from the domain's expectations."""

import json
import threading
from collections.abc import Sequence
from typing import Any

import great_expectations as gx
import numpy as np
import pandas as pd
from great_expectations.core.expectation_validation_result import ExpectationValidationResult
from great_expectations.data_context.types.base import ProgressBarsConfig

from fedflow.expectations import Expectation
from validation.summary import CheckResult, ValidationSummary

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
    suite = gx.ExpectationSuite(name=name)
    for expectation in expectations:
        kwargs = {k: v for k, v in expectation.kwargs.items() if v is not None}
        suite.add_expectation(_gx_class(expectation.type)(**kwargs))
    return suite


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
    return CheckResult(
        expectation=config.type if config is not None else "unknown",
        column=kwargs.get("column"),
        success=bool(result.success),
        element_count=details.get("element_count"),
        unexpected_count=details.get("unexpected_count"),
        unexpected_percent=details.get("unexpected_percent"),
        # Only dtype names are reported as observed values: other observations can be raw data.
        observed_type=str(observed) if config is not None and config.type.endswith("type_list") else None,
        error=error,
    )


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


# Building a suite costs O(expectations^2) in GX (each addition is compared with the others):
# build it, and its in-memory data asset, once per process and suite, and only swap the frame.
_PREPARED: dict[tuple[str, str], tuple[gx.ExpectationSuite, Any]] = {}


def _prepared(suite_name: str, expectations: Sequence[Expectation]) -> tuple[gx.ExpectationSuite, Any]:
    key = (suite_name, json.dumps([(e.type, e.kwargs) for e in expectations], sort_keys=True, default=str))
    if key not in _PREPARED:
        suite = build_suite(suite_name, expectations)
        source = _context().data_sources.add_or_update_pandas("fedflow-sites")
        asset = source.add_dataframe_asset(name=f"{suite_name}-{len(_PREPARED)}")
        _PREPARED[key] = (suite, asset.add_batch_definition_whole_dataframe("whole"))
    return _PREPARED[key]


def validate_frame(
    frame: pd.DataFrame,
    expectations: Sequence[Expectation],
    *,
    site: str,
    suite_name: str,
) -> ValidationSummary:
    """Run the suite on `frame` and reduce GX's result to a summary without raw values."""
    with _LOCK:
        suite, batch_definition = _prepared(suite_name, expectations)
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format="SUMMARY")
    checks = [_check_result(r) for r in result.results]
    return ValidationSummary(site=site, success=bool(result.success), rows=len(frame), checks=checks)


def failure_summary(site: str, reason: str) -> ValidationSummary:
    """The summary of a site whose data could not even be read."""
    return ValidationSummary(site=site, success=False, rows=0, error=reason)
