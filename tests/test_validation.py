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


def test_many_sites_validated_in_one_run_match_one_by_one(healthcare: Domain) -> None:
    from fedflow.sitedata import read_site_frame
    from validation import validate_frames

    # Three simulated clients cut from one hospital's file: same columns and dtypes.
    whole = read_site_frame(healthcare.site_path("cleveland"), healthcare.spec, site="cleveland")
    frames = {name: whole.iloc[i::3].reset_index(drop=True) for i, name in enumerate(["a", "b", "c"])}
    one_by_one = {
        site: validate_frame(frame, healthcare.expectations, site=site, suite_name="healthcare")
        for site, frame in frames.items()
    }
    together = validate_frames(frames, healthcare.expectations, suite_name="healthcare")
    assert all(summary.success for summary in together.values())
    for site in frames:
        assert together[site].success == one_by_one[site].success
        assert together[site].rows == one_by_one[site].rows
        assert sorted((c.expectation, c.column or "", c.success) for c in together[site].checks) == sorted(
            (c.expectation, c.column or "", c.success) for c in one_by_one[site].checks
        )
    # One broken site: the joint run fails, so every site is validated alone and only it fails.
    broken = dict(frames)
    broken["b"] = frames["b"].assign(age=150)
    result = validate_frames(broken, healthcare.expectations, suite_name="healthcare")
    assert {site: s.success for site, s in result.items()} == {"a": True, "b": False, "c": True}
    failing = [c for c in result["b"].checks if not c.success]
    assert [(c.column, c.unexpected_count) for c in failing] == [("age", len(frames["b"]))]
    # A site too small for the row-count check fails it even when the joint rows pass.
    tiny = dict(frames)
    tiny["c"] = frames["c"].head(5)
    result = validate_frames(tiny, healthcare.expectations, suite_name="healthcare")
    assert not result["c"].success and result["a"].success
    assert [c.expectation for c in result["c"].checks if not c.success] == [
        "expect_table_row_count_to_be_between"
    ]
    (too_few,) = result["c"].failures
    minimum = healthcare.spec.quality.min_rows
    assert too_few.describe() == (
        f"expect_table_row_count_to_be_between (at least {minimum} rows): the file has 5 rows"
    )


def test_checks_over_a_whole_column_are_never_judged_on_the_joint_rows(healthcare: Domain) -> None:
    from fedflow.expectations import Expectation
    from fedflow.sitedata import read_site_frame
    from validation import validate_frames

    whole = read_site_frame(healthcare.site_path("cleveland"), healthcare.spec, site="cleveland")
    frames = {name: whole.iloc[i::3].reset_index(drop=True) for i, name in enumerate(["a", "b", "c"])}
    # b has 20 % blank thalch: together the three sites have ~7 %, which `mostly: 0.9` would accept.
    b = frames["b"].copy()
    b.loc[b.index[: len(b) // 5], "thalch"] = None
    frames["b"] = b
    expectations = [
        *healthcare.expectations,
        Expectation("expect_column_values_to_not_be_null", {"column": "thalch", "mostly": 0.9}),
    ]
    result = validate_frames(frames, expectations, suite_name="healthcare-mostly")
    assert {site: s.success for site, s in result.items()} == {"a": True, "b": False, "c": True}
