"""Outlier-safe shared preprocessing (#17): one planted extreme value cannot overflow the shared
sums, end the federation for the other sites, or be read back out of the logged preprocessor.

Before: one `1e300` cell in a column without `max` overflowed the sums of squares, every site's
update was dropped as non-finite, and `preprocessor.json` held a mean of 2.994e+296, from which
the planted value could be worked back out (mean x rows).
"""

import dataclasses
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from site_helpers import engine_plan, in_process_channel

from domains import Domain
from fedflow.config import FederationConfig
from fedflow.domain import DomainSpec, NumericColumn
from fedflow.expectations import expectations_from_spec
from fedflow.federation import run_federation
from fedflow.federation.memory_recorder import MemoryRecorder
from fedflow.messages import PrepareReply, PrepareRequest
from fedflow.site_agent import SiteAgent, SiteData, SiteSettings
from fedflow.site_policy import SitePolicy
from fedflow.tabular import UnsafeStatisticsError, fit_preprocessor, numeric_statistics, site_statistics
from fedflow.validation_summary import ValidationSummary

LOG = logging.getLogger("test_safe_statistics")
PLANTED = 1e300
SITE = "hungary"


def _column(**declared: object) -> NumericColumn:
    return NumericColumn.model_validate({"name": "income", **declared})


def test_values_are_clipped_to_the_declared_range_before_they_are_summed() -> None:
    """[1, 2, 1e300, -7, missing] in [0, 10]: summed as [1, 2, 10, 0]."""
    values = pd.Series([1.0, 2.0, PLANTED, -7.0, np.nan])
    stats = numeric_statistics(values, _column(min=0, max=10))
    assert (stats.count, stats.missing, stats.total, stats.total_sq) == (4, 1, 13.0, 105.0)


def test_log_columns_are_clipped_before_the_log() -> None:
    """An amount above `max` counts as `max`: log1p(100) for 1e300, log1p(0) for a negative one."""
    stats = numeric_statistics(pd.Series([PLANTED, -5.0]), _column(min=0, max=100, log=True))
    assert stats.total == pytest.approx(math.log1p(100)) and stats.count == 2


def test_values_in_range_are_summed_exactly_as_before() -> None:
    """Clipping changes nothing for valid rows (the behaviour digests depend on it)."""
    values = np.random.default_rng(0).normal(50, 10, 1000)
    stats = numeric_statistics(pd.Series(values), _column(min=-1000, max=1000))
    assert stats.total == float(values.sum()) and stats.total_sq == float(np.square(values).sum())


@pytest.mark.parametrize("planted", [math.inf, -math.inf, PLANTED])
def test_a_sum_that_is_not_finite_is_an_error_naming_the_column_not_the_value(planted: float) -> None:
    """No declared range to clip to: the site cannot share its sums (and says which column)."""
    with pytest.raises(UnsafeStatisticsError, match="column 'income'") as raised:
        numeric_statistics(pd.Series([1.0, planted, 3.0]), _column())
    assert "e+300" not in str(raised.value) and "inf " not in str(raised.value)


def test_a_planted_value_cannot_be_worked_back_out_of_the_mean() -> None:
    """With a declared range the planted value weighs like `max`: mean x rows gives back at most
    the clipped sum, nowhere near the planted value."""
    spec = DomainSpec.model_validate(
        {
            "name": "planted",
            "task": "regression",
            "target": {"column": "y"},
            "numeric": [{"name": "income", "min": 0, "max": 1000}],
            "sites": {"a": "a.csv"},
        }
    )
    honest = [200.0, 300.0, 400.0, 500.0]
    frame = pd.DataFrame({"income": [*honest, PLANTED], "y": [0.0] * 5})
    preprocessor = fit_preprocessor(site_statistics(frame, spec), spec)
    (income,) = preprocessor.numeric
    assert income.mean == pytest.approx((sum(honest) + 1000) / 5)
    assert income.mean * 5 - sum(honest) == pytest.approx(1000)  # the clipped value, not 1e300
    assert "e+" not in preprocessor.model_dump_json()


def _without_range(healthcare: Domain, column: str) -> Domain:
    raw = healthcare.spec.model_dump()
    for entry in raw["numeric"]:
        if entry["name"] == column:
            entry["min"] = entry["max"] = None
    spec = DomainSpec.model_validate(raw)
    return dataclasses.replace(healthcare, spec=spec, expectations=expectations_from_spec(spec))


def _planted_file(healthcare: Domain, folder: Path) -> Path:
    rows = pd.read_csv(healthcare.site_path(SITE), dtype=str, keep_default_na=False)
    rows.loc[rows.index[7], "chol"] = "1e300"
    path = folder / "hungary-planted.csv"
    rows.to_csv(path, index=False)
    return path


def test_a_site_whose_checks_were_skipped_still_cannot_share_unsafe_sums(
    healthcare: Domain, tmp_path: Path
) -> None:
    """Defence in depth: even with a validator that passes everything, the site's statistics are
    refused at the site, and the reason names the column (never the value)."""
    domain = _without_range(healthcare, "chol")

    def passes(frame: pd.DataFrame, *, site: str) -> ValidationSummary:
        return ValidationSummary(site=site, success=True, rows=len(frame))

    settings = SiteSettings(
        name=SITE,
        spec=domain.spec,
        build_model=domain.build_model,
        data=SiteData(path=_planted_file(healthcare, tmp_path)),
        validator=passes,
        state_dir=tmp_path / "state",
        keys_dir=tmp_path / "keys",
        policy=SitePolicy.simulation(),
    )
    reply = SiteAgent(settings).prepare(PrepareRequest(federation_id="safe", holdout_fraction=0.25, seed=0))
    assert isinstance(reply, PrepareReply) and reply.statistics is None and not reply.summary.success
    reasons = " ".join(reply.summary.reasons())
    assert f"site {SITE!r}: column 'chol'" in reasons and "e+300" not in reasons


def test_one_sites_planted_value_leaves_the_others_federation_running(
    healthcare: Domain, tmp_path: Path
) -> None:
    """Engine: hungary's 1e300 cholesterol (a column declaring no range) excludes hungary by name,
    with the column, and the other three hospitals train; the logged preprocessor holds no trace."""
    domain = _without_range(healthcare, "chol")
    channel = in_process_channel(domain, tmp_path, paths={SITE: _planted_file(healthcare, tmp_path)})
    recorder = MemoryRecorder(checkpoints=False)
    config = FederationConfig.model_validate({"rounds": 2, "seed": 3, "audit": False})
    outcome = run_federation(
        engine_plan(domain, config, "planted"), channel=channel, recorder=recorder, log=LOG
    )

    assert list(outcome.excluded) == [SITE]
    assert any("(chol)" in reason and "too large to sum" in reason for reason in outcome.excluded[SITE])
    assert outcome.eligible == [s for s in domain.spec.site_names if s != SITE]
    assert len(recorder.rounds) == 2
    for record in recorder.rounds:
        assert all(math.isfinite(v) for v in record.logged.values())
    assert recorder.preprocessing is not None
    chol = next(n for n in recorder.preprocessing.preprocessor.numeric if n.name == "chol")
    assert 50 < chol.mean < 700 and 0 < chol.std < 700
    assert "e+2" not in recorder.preprocessing.preprocessor.model_dump_json()
