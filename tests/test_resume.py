"""A coordinator killed mid-run resumes from its last completed round and ends with exactly the
model an uninterrupted run with the same seed ends with."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from fedflow.checkpoint import load_checkpoint
from fedflow.config import FederationConfig, LocalTrainConfig, StrategyConfig

FEDFLOW = str(Path(sys.executable).with_name("fedflow"))
ROUNDS = 6


def _env(tmp_path: Path, name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / name}.db",
        FEDFLOW_ARTIFACT_ROOT=str(tmp_path / f"{name}-artifacts"),
        FEDFLOW_STATE_DIR=str(tmp_path / f"{name}-state"),
        PREFECT_HOME=str(tmp_path / f"{name}-prefect"),
    )
    return env


def _config() -> FederationConfig:
    # SCAFFOLD keeps state at the server and at every site: the hardest case for a resume.
    return FederationConfig(
        rounds=ROUNDS, seed=3, local=LocalTrainConfig(epochs=1), strategy=StrategyConfig(name="scaffold")
    )


def test_killed_run_resumes_to_the_uninterrupted_model(
    tmp_path: Path, prefect_api: None, mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(tmp_path, "killed")
    state = Path(env["FEDFLOW_STATE_DIR"]) / "runs" / "killed" / "state.json"
    command = [
        FEDFLOW,
        "run",
        "healthcare",
        "--rounds",
        str(ROUNDS),
        "--seed",
        "3",
        "--local-epochs",
        "1",
        "--strategy",
        "scaffold",
        "--run-name",
        "killed",
    ]
    process = subprocess.Popen(
        command,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            if state.is_file() and json.loads(state.read_text())["round"] >= 2:
                break
            time.sleep(0.1)
        assert process.poll() is None, (
            "the run ended before it could be killed: " + process.stderr.read().decode()[-2000:]
        )
        os.killpg(process.pid, signal.SIGKILL)  # no clean-up, no finally blocks: a real crash
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    interrupted_at = json.loads(state.read_text())["round"]
    assert 2 <= interrupted_at < ROUNDS

    resumed = subprocess.run(
        [FEDFLOW, "resume", "killed"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"after round {interrupted_at}" in resumed.stdout

    # The same federation uninterrupted, in this process.
    monkeypatch.setenv("FEDFLOW_STATE_DIR", str(tmp_path / "straight-state"))
    from flows.coordinator import federated_training

    federated_training(domain="healthcare", federation=_config(), run_name="straight")

    monkeypatch.setenv("FEDFLOW_STATE_DIR", env["FEDFLOW_STATE_DIR"])
    killed, killed_weights, killed_strategy = load_checkpoint("killed")
    monkeypatch.setenv("FEDFLOW_STATE_DIR", str(tmp_path / "straight-state"))
    straight, straight_weights, straight_strategy = load_checkpoint("straight")
    assert killed.round == straight.round == ROUNDS
    for name, value in straight_weights.items():
        np.testing.assert_array_equal(killed_weights[name], value, err_msg=name)
    for name, value in straight_strategy.items():
        np.testing.assert_array_equal(killed_strategy[name], value, err_msg=name)

    # One MLflow run, finished, with every round's metrics.
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    run = client.get_run(killed.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.tags.get("fedflow.resumed") == "true"
    steps = sorted({m.step for m in client.get_metric_history(run.info.run_id, "global/roc_auc")})
    assert steps == list(range(1, ROUNDS + 1))

    again = subprocess.run(
        [FEDFLOW, "resume", "killed"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0 and "already completed" in again.stdout


def test_site_state_continues_from_the_last_accepted_round(tmp_path: Path) -> None:
    from fedflow.site_state import load_site_state, save_site_state

    for round_number in (1, 2, 3):
        save_site_state(tmp_path, "f", "north", round_number, {"c": np.full(2, float(round_number))})
    assert load_site_state(tmp_path, "f", "north", before_round=1) is None
    # Round 4 after an accepted round 3: state of round 3.
    assert load_site_state(tmp_path, "f", "north", before_round=4)["c"][0] == 3.0  # type: ignore[index]
    # Round 4 when round 3's update was dropped (last accepted: 2): state of round 2.
    assert load_site_state(tmp_path, "f", "north", before_round=3)["c"][0] == 2.0  # type: ignore[index]
    assert load_site_state(tmp_path, "f", "south", before_round=4) is None


def test_site_state_refuses_names_that_leave_its_folder(tmp_path: Path) -> None:
    from fedflow.site_state import load_site_state, save_site_state

    for federation_id in ("../escape", "/absolute", "..", ".hidden", "a/b"):
        with pytest.raises(ValueError, match="cannot name a folder"):
            save_site_state(tmp_path, federation_id, "site", 1, {"x": np.zeros(1)})
    save_site_state(tmp_path, "heart 2026 (DP ε = 1)", "site", 1, {"x": np.ones(1)})
    assert load_site_state(tmp_path, "heart 2026 (DP ε = 1)", "site", before_round=2) is not None


def test_a_site_lost_before_a_resume_does_not_change_the_run_s_preprocessing(
    tmp_path: Path, prefect_api: None, mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A site that fails validation on resume must not change the shared preprocessing: neither
    the model's inputs (which would no longer fit) nor the run's logged preprocessor."""
    import mlflow
    import pandas as pd

    from domains import load_domain
    from fedflow.checkpoint import checkpoint_dir
    from flows.coordinator import SiteSelection, federated_training

    healthcare = load_domain("healthcare")
    sites = ["cleveland", "hungary", "va_long_beach"]  # restecg is missing only at hungary
    config = FederationConfig(rounds=1, seed=1, audit=False)
    first = federated_training(
        domain="healthcare", federation=config, sites=SiteSelection(names=sites), run_name="lost"
    )
    # As a coordinator killed after round 1 of 3 leaves it.
    state = checkpoint_dir("lost") / "state.json"
    saved = json.loads(state.read_text())
    saved["config"]["rounds"] = 3
    state.write_text(json.dumps(saved))

    frame = pd.read_csv(healthcare.site_path("hungary"), dtype=str)
    frame.loc[frame.index[:3], "age"] = "150"
    frame.to_csv(tmp_path / "hungary.csv", index=False)
    files = tmp_path / "sites.yaml"
    files.write_text(json.dumps({"sites": {"hungary": str(tmp_path / "hungary.csv")}}))
    resumed = federated_training(
        domain="healthcare",
        sites=SiteSelection(names=sites, files=str(files)),
        run_name="lost",
    )
    assert resumed.rounds_completed == 3 and resumed.mlflow_run_id == first.mlflow_run_id
    assert "hungary" in resumed.excluded_sites
    logged = mlflow.artifacts.load_dict(f"runs:/{first.mlflow_run_id}/preprocessing/preprocessor.json")
    checkpoint, _, _ = load_checkpoint("lost")
    assert logged == checkpoint.preprocessor.model_dump()
    assert "restecg__missing" in checkpoint.preprocessor.feature_names
