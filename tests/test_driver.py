"""The federation driver on its own: site agents in this process, an in-memory recorder, real GX
validation and real training; no Prefect, no MLflow."""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from site_helpers import engine_plan, in_process_channel

from domains import Domain
from fedflow.config import FederationConfig
from fedflow.errors import InsufficientSitesError
from fedflow.federation import FederationState, run_federation
from fedflow.federation.memory_recorder import MemoryRecorder
from fedflow.federation.recorder import RoundRecord

LOG = logging.getLogger("test_driver")
# restecg is missing in one row at hungary and nowhere else among these three hospitals: the
# shared preprocessing gets a missing-value indicator for it only while hungary takes part (seed 1
# puts that row among hungary's training rows).
SITES = ["cleveland", "hungary", "va_long_beach"]


class MachineLost(RuntimeError):
    """The coordinator's machine goes away after a round's checkpoint is written."""


class CrashAfter(MemoryRecorder):
    """A memory recorder whose process dies right after round `after` is checkpointed."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def round_completed(self, record: RoundRecord) -> None:
        """Checkpoint the round, then die."""
        super().round_completed(record)
        if record.state.round == self.after:
            raise MachineLost(f"lost after round {self.after}")


def _config(**changes: object) -> FederationConfig:
    base = {"rounds": 3, "seed": 1, "audit": False, "strategy": {"name": "scaffold"}, **changes}
    return FederationConfig.model_validate(base)


def _broken_hungary(healthcare: Domain, folder: Path) -> Path:
    frame = pd.read_csv(healthcare.site_path("hungary"), dtype=str)
    frame.loc[frame.index[:3], "age"] = "150"
    path = folder / "hungary-broken.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_resumed_run_keeps_the_preprocessing_it_agreed_on_when_a_site_is_lost(
    healthcare: Domain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDFLOW_STATE_DIR", str(tmp_path / "coordinator"))
    plan = engine_plan(healthcare, _config(), "lost-site", sites=SITES)
    first = CrashAfter(after=1)
    with pytest.raises(MachineLost):
        run_federation(plan, channel=in_process_channel(healthcare, tmp_path), recorder=first, log=LOG)
    assert first.preprocessing is not None
    agreed = first.preprocessing.preprocessor
    assert "restecg__missing" in agreed.feature_names

    # hungary's file breaks while the coordinator is down: it fails validation on resume. Refitting
    # would drop restecg's missing-value indicator, and the model would no longer fit its inputs.
    channel = in_process_channel(
        healthcare, tmp_path, paths={"hungary": _broken_hungary(healthcare, tmp_path)}
    )
    state = FederationState.load("lost-site")
    assert state.round == 1
    resumed = MemoryRecorder()
    resumed_plan = engine_plan(healthcare, _config(), "lost-site", sites=SITES, resume=state)
    outcome = run_federation(resumed_plan, channel=channel, recorder=resumed, log=LOG)

    assert outcome.rounds_completed == 3 and outcome.eligible == ["cleveland", "va_long_beach"]
    assert "hungary" in outcome.excluded
    assert resumed.preprocessing is None, "a resumed run does not fit (or record) a new preprocessing"
    assert [r.state.round for r in resumed.rounds] == [2, 3]
    for record in resumed.rounds:
        assert record.state.checkpoint.preprocessor == agreed
        assert record.participants == ["cleveland", "va_long_beach"]


@pytest.mark.slow  # a straight, a crashed and a resumed SCAFFOLD run on four hospitals (~10 s alone)
def test_a_run_resumed_after_a_crash_ends_with_the_uninterrupted_model(
    healthcare: Domain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SCAFFOLD keeps state at the coordinator and at every site: the hardest case for a resume."""
    monkeypatch.setenv("FEDFLOW_STATE_DIR", str(tmp_path / "coordinator"))
    config = _config(rounds=4)
    straight = MemoryRecorder()
    plan = engine_plan(healthcare, config, "straight")
    run_federation(plan, channel=in_process_channel(healthcare, tmp_path / "a"), recorder=straight, log=LOG)

    channel = in_process_channel(healthcare, tmp_path / "b")
    with pytest.raises(MachineLost):
        run_federation(
            engine_plan(healthcare, config, "crashed"), channel=channel, recorder=CrashAfter(2), log=LOG
        )
    resumed = MemoryRecorder()
    plan = engine_plan(healthcare, config, "crashed", resume=FederationState.load("crashed"))
    run_federation(plan, channel=channel, recorder=resumed, log=LOG)

    expected, got = straight.rounds[-1].state, resumed.rounds[-1].state
    for name, value in expected.weights.items():
        np.testing.assert_array_equal(got.weights[name], value, err_msg=name)
    for name, value in expected.strategy_state.items():
        np.testing.assert_array_equal(got.strategy_state[name], value, err_msg=name)
    assert got.checkpoint.history[-1]["global/roc_auc"] == expected.checkpoint.history[-1]["global/roc_auc"]


def test_too_few_valid_sites_stop_the_run_with_every_reason(healthcare: Domain, tmp_path: Path) -> None:
    paths = {"hungary": _broken_hungary(healthcare, tmp_path), "cleveland": tmp_path / "never-exported.csv"}
    channel = in_process_channel(healthcare, tmp_path, paths=paths)
    plan = engine_plan(healthcare, _config(min_sites=3, min_sites_per_round=3), "too-few")
    recorder = MemoryRecorder(checkpoints=False)
    with pytest.raises(InsufficientSitesError, match=r"only 2 site\(s\) passed validation") as raised:
        run_federation(plan, channel=channel, recorder=recorder, log=LOG)
    assert "hungary" in str(raised.value) and "cleveland" in str(raised.value)
    assert "never-exported" not in str(raised.value), "a site's path never reaches the coordinator"
    assert recorder.preparation is not None and sorted(recorder.preparation.excluded) == [
        "cleveland",
        "hungary",
    ]
    assert recorder.rounds == []
