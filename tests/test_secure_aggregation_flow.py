"""Secure aggregation in the coordinator flow (real Prefect, MLflow, GX) and its config rules."""

import numpy as np
import pytest
from pydantic import ValidationError

from fedflow.attacks import AttackConfig
from fedflow.checkpoint import load_checkpoint
from fedflow.config import FederationConfig, LocalTrainConfig, SecureAggregationConfig
from flows.coordinator import federated_training


def _config(*, secure: bool, **extra: object) -> FederationConfig:
    return FederationConfig.model_validate(
        {
            "rounds": 2,
            "seed": 3,
            "audit": False,
            "local": LocalTrainConfig(epochs=1).model_dump(),
            "secure_aggregation": SecureAggregationConfig(enabled=secure, max_dropouts=1).model_dump(),
            **extra,
        }
    )


def _final_weights(run_name: str) -> dict[str, np.ndarray]:
    return load_checkpoint(run_name)[1]


@pytest.mark.parametrize("strategy", ["fedmedian", "fedtrimmedmean", "krum", "multikrum", "scaffold"])
def test_refused_with_strategies_that_need_individual_updates(strategy: str) -> None:
    with pytest.raises(ValidationError, match="secure aggregation cannot be combined"):
        _config(secure=True, strategy={"name": strategy})


def test_refused_with_a_coordinator_norm_bound() -> None:
    with pytest.raises(ValidationError, match="never sees an individual update"):
        _config(secure=True, checks={"max_update_norm": 5.0})


@pytest.mark.parametrize(
    # Two federations draw different secret noise: the seeded noise of experiments makes them comparable.
    "privacy",
    [None, {"mode": "distributed", "clip_norm": 0.5, "noise_multiplier": 0.3, "reproducible_noise": True}],
)
def test_masked_rounds_end_with_the_plain_model(privacy, prefect_api: None, mlflow_store: str) -> None:  # type: ignore[no-untyped-def]
    extra = {"privacy": privacy} if privacy else {}
    plain = federated_training(
        domain="healthcare", federation=_config(secure=False, **extra), run_name="plain"
    )
    masked = federated_training(
        domain="healthcare", federation=_config(secure=True, **extra), run_name="masked"
    )
    assert (masked.epsilon is None) == (privacy is None)
    assert masked.rounds_completed == plain.rounds_completed == 2
    a, b = _final_weights("plain"), _final_weights("masked")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-5, err_msg=name)
    assert masked.final_metrics["roc_auc"] == pytest.approx(plain.final_metrics["roc_auc"], abs=1e-3)
    # What crossed the boundary really was masked: 64-bit field elements, not float32 deltas.
    plain_history, masked_history = load_checkpoint("plain")[0].history, load_checkpoint("masked")[0].history
    assert masked_history[0]["network/bytes_received"] > 1.8 * plain_history[0]["network/bytes_received"]
    assert masked_history[0]["secure_aggregation/threshold"] == 3.0  # 4 sites, 1 dropout allowed


def test_a_site_dropping_after_key_sharing_is_unmasked_away(prefect_api: None, mlflow_store: str) -> None:
    # va_long_beach shares its secrets, then crashes before sending its masked update, every round.
    dropout = {"attack": AttackConfig(kind="dropout", sites=["va_long_beach"]).model_dump()}
    plain = federated_training(domain="healthcare", federation=_config(secure=False, **dropout), run_name="p")
    masked = federated_training(domain="healthcare", federation=_config(secure=True, **dropout), run_name="m")
    assert masked.rounds_completed == plain.rounds_completed == 2
    a, b = _final_weights("p"), _final_weights("m")
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-5, err_msg=name)
    history = load_checkpoint("m")[0].history
    assert [h["sites/participants"] for h in history] == [3.0, 3.0]
    assert [h["sites/dropped"] for h in history] == [1.0, 1.0]
    assert [h["secure_aggregation/members"] for h in history] == [4.0, 4.0]
