"""Continual rounds: a federation that starts from the domain's champion model version."""

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from fedflow.checkpoint import load_checkpoint
from fedflow.config import FederationConfig, LocalTrainConfig
from fedflow.errors import FedflowError
from fedflow.params import decode
from flows.coordinator import federated_training
from flows.tracking import load_champion


def _config(learning_rate: float) -> FederationConfig:
    return FederationConfig(
        rounds=2, seed=4, audit=False, local=LocalTrainConfig(learning_rate=learning_rate)
    )


def test_continuing_starts_from_the_champion_and_registers_new_versions(
    prefect_api: None, mlflow_store: str
) -> None:
    with pytest.raises(FedflowError, match="no 'champion' version"):
        federated_training(
            domain="healthcare", federation=_config(0.05), run_name="too-early", start_from="champion"
        )
    first = federated_training(domain="healthcare", federation=_config(0.05), run_name="first")
    champion = load_champion("healthcare")
    assert champion.version == first.champion_version
    # With a vanishing learning rate the continued model stays where it started: at the champion.
    still = federated_training(
        domain="healthcare",
        federation=_config(1e-12),
        run_name="still",
        start_from="champion",
        overrides={"rounds": 1},
    )
    assert still.rounds_completed == 1
    continued, started = load_checkpoint("still")[1], decode(champion.weights_payload)
    for name in started:
        np.testing.assert_allclose(continued[name], started[name], atol=1e-6)
    # The same run from scratch stays at the seeded model instead, far from the champion.
    federated_training(
        domain="healthcare", federation=_config(1e-12), run_name="scratch", overrides={"rounds": 1}
    )
    scratch = load_checkpoint("scratch")[1]
    assert any(not np.allclose(scratch[name], started[name], atol=1e-3) for name in started)
    client = MlflowClient()
    run = client.get_run(still.mlflow_run_id)
    assert run.data.tags["fedflow.continued_from"] == f"healthcare-global/{champion.version}"
    versions = client.search_model_versions("name='healthcare-global'")
    assert len(versions) == 4  # two from the first run, one from the continued run, one from scratch
