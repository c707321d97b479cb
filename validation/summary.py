"""The privacy-safe summary types live in the engine (they travel in its messages)."""

from fedflow.validation_summary import (
    CheckResult,
    ValidationSummary,
    class_minimum_check,
    failure_summary,
    with_check,
)

__all__ = ["CheckResult", "ValidationSummary", "class_minimum_check", "failure_summary", "with_check"]
