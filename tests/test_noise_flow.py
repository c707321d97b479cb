"""Secret and reproducible DP noise in the coordinator flow (real Prefect, MLflow and GX)."""

import base64
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from fedflow.checkpoint import checkpoint_dir
from fedflow.config import FederationConfig
from fedflow.errors import FedflowError
from flows.coordinator import federated_training
from flows.transport import TransportConfig


def _config(**privacy: object) -> FederationConfig:
    return FederationConfig.model_validate(
        {
            "rounds": 1,
            "seed": 2,
            "audit": False,
            "privacy": {"mode": "central", "clip_norm": 1.0, "noise_multiplier": 0.5, **privacy},
        }
    )


def test_a_cross_silo_run_refuses_reproducible_noise_before_anything_runs(
    prefect_api: None, mlflow_store: str
) -> None:
    with pytest.raises(FedflowError, match=r"reproducible_noise is for experiments only"):
        federated_training(
            domain="healthcare",
            federation=_config(reproducible_noise=True),
            transport=TransportConfig(mode="cross-silo"),
            run_name="seeded-cross-silo",
        )
    client = MlflowClient(mlflow_store)
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert not client.search_runs(experiments), "nothing was recorded"
    assert not checkpoint_dir("seeded-cross-silo").exists()


def test_reproducible_noise_is_labelled_in_mlflow(prefect_api: None, mlflow_store: str) -> None:
    result = federated_training(
        domain="healthcare", federation=_config(reproducible_noise=True), run_name="seeded"
    )
    run = MlflowClient(mlflow_store).get_run(result.mlflow_run_id)
    assert run.data.tags["fedflow.noise"] == "reproducible (experiments only)"
    assert run.data.params["privacy.reproducible_noise"] == "True"


def test_secret_noise_keeps_its_key_out_of_mlflow(
    prefect_api: None, mlflow_store: str, tmp_path: Path
) -> None:
    result = federated_training(domain="healthcare", federation=_config(), run_name="secret")
    run = MlflowClient(mlflow_store).get_run(result.mlflow_run_id)
    assert run.data.tags["fedflow.noise"].startswith("secret")
    assert run.data.params["privacy.reproducible_noise"] == "False"
    key = (checkpoint_dir("secret") / "noise.key").read_bytes()
    assert len(key) == 32
    spellings = [key.hex(), base64.b64encode(key).decode()]
    logged = [*run.data.params.values(), *run.data.tags.values()]
    assert not any(form in value for form in spellings for value in logged)
    artifacts = [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]
    assert artifacts, "the run logged artifacts to look through"
    for path in artifacts:
        content = path.read_bytes()
        assert key not in content and not any(form.encode() in content for form in spellings), path
