"""Great Expectations 1.x suites built from a domain, and privacy-safe validation summaries."""

from validation.summary import (
    CheckResult,
    ValidationSummary,
    class_minimum_check,
    failure_summary,
    with_check,
)
from validation.validate import build_suite, validate_frame, validate_frames

__all__ = [
    "CheckResult",
    "ValidationSummary",
    "build_suite",
    "class_minimum_check",
    "failure_summary",
    "validate_frame",
    "validate_frames",
    "with_check",
]
