"""The GX suite passes clean hospital files and fails each kind of broken frame by name."""

import pandas as pd
import pytest

from domains import Domain
from fedflow.sitedata import read_site_frame
from validation import validate_frame


def _frame(domain: Domain, site: str = "cleveland") -> pd.DataFrame:
    return read_site_frame(domain.site_path(site), domain.spec, site=site)


@pytest.mark.parametrize("site", ["cleveland", "hungary", "switzerland", "va_long_beach"])
def test_every_hospital_passes(healthcare: Domain, site: str) -> None:
    summary = validate_frame(
        _frame(healthcare, site), healthcare.expectations, site=site, suite_name="healthcare"
    )
    assert summary.success, summary.reasons()
    assert summary.rows > 100


def _break_missing_column(f: pd.DataFrame) -> pd.DataFrame:
    return f.drop(columns=["thalch"])


def _break_wrong_type(f: pd.DataFrame) -> pd.DataFrame:
    f = f.copy()
    f["age"] = f["age"].astype(str) + " years"
    return f


def _break_out_of_range(f: pd.DataFrame) -> pd.DataFrame:
    f = f.copy()
    f.loc[f.index[:3], "age"] = 187
    return f


def _break_null_target(f: pd.DataFrame) -> pd.DataFrame:
    f = f.copy()
    f["num"] = f["num"].astype(float)
    f.loc[f.index[:2], "num"] = None
    return f


def _break_unknown_category(f: pd.DataFrame) -> pd.DataFrame:
    f = f.copy()
    f.loc[f.index[0], "cp"] = "chest hurts"
    return f


def _break_too_few_rows(f: pd.DataFrame) -> pd.DataFrame:
    return f.head(5)


@pytest.mark.parametrize(
    ("breaker", "expectation", "column"),
    [
        (_break_missing_column, "expect_column_to_exist", "thalch"),
        (_break_wrong_type, "expect_column_values_to_be_in_type_list", "age"),
        (_break_out_of_range, "expect_column_values_to_be_between", "age"),
        (_break_null_target, "expect_column_values_to_not_be_null", "num"),
        (_break_unknown_category, "expect_column_values_to_be_in_set", "cp"),
        (_break_too_few_rows, "expect_table_row_count_to_be_between", None),
    ],
)
def test_broken_frames_fail_naming_the_expectation(
    healthcare: Domain,
    breaker,
    expectation: str,
    column: str | None,  # type: ignore[no-untyped-def]
) -> None:
    summary = validate_frame(
        breaker(_frame(healthcare)), healthcare.expectations, site="x", suite_name="healthcare"
    )
    assert not summary.success
    failed = {(c.expectation, c.column) for c in summary.failures}
    assert (expectation, column) in failed
    assert any(expectation in reason for reason in summary.reasons())


def test_summary_carries_no_raw_values(healthcare: Domain) -> None:
    frame = _frame(healthcare)
    frame = frame.astype({"age": float, "chol": float})
    frame.loc[frame.index[0], "age"] = 119.25  # in range, harmless
    frame.loc[frame.index[1], "chol"] = 987.654  # out of range: GX's own result would quote it
    frame.loc[frame.index[2], "thal"] = "patient-name-like-token"
    summary = validate_frame(frame, healthcare.expectations, site="x", suite_name="healthcare")
    text = summary.model_dump_json()
    assert not summary.success
    assert "987.654" not in text and "patient-name-like-token" not in text
    chol = next(c for c in summary.failures if c.column == "chol")
    assert chol.unexpected_count == 1
