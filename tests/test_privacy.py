"""Client-level DP: clipping, noise, accounting, the budget stop and refused combinations."""

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from opacus.accountants import RDPAccountant
from pydantic import ValidationError
from site_helpers import prepared_agent

from fedflow.aggregate import l2_norm
from fedflow.config import FederationConfig, PrivacyConfig, StrategyConfig
from fedflow.privacy.accountant import PrivacyAccountant
from fedflow.privacy.dp_fedavg import add_gaussian_noise, clip_delta, per_update_noise_std
from fedflow.privacy.noise_source import SeededNoise


def test_clip_and_noise() -> None:
    delta = {"a": np.array([3.0, 0.0], np.float32), "b": np.array([4.0], np.float32)}
    clipped = clip_delta(delta, 1.0)
    assert l2_norm(clipped) == pytest.approx(1.0)
    assert l2_norm(clip_delta(delta, 10.0)) == pytest.approx(5.0)  # already inside the bound
    # m = 4 sites: each adds sd sigma*C/2, so the sum's noise has sd sigma*C.
    assert per_update_noise_std(clip_norm=2.0, noise_multiplier=1.5, sites_in_round=4) == pytest.approx(1.5)
    big = {"w": np.zeros(200_000, np.float32)}
    noisy = add_gaussian_noise(big, std=0.5, source=SeededNoise(seed=1))["w"]
    assert noisy.std() == pytest.approx(0.5, rel=0.01)
    assert np.array_equal(noisy, add_gaussian_noise(big, std=0.5, source=SeededNoise(seed=1))["w"])


def test_noise_does_not_depend_on_the_order_of_the_names() -> None:
    # Decoded payloads come back in varying key order; the same stream must give the same noise.
    from fedflow.privacy.noise_source import NoiseKey, NoiseSource

    forward = {"a": np.zeros(3, np.float32), "b": np.zeros(2, np.float32)}
    backward = {"b": np.zeros(2, np.float32), "a": np.zeros(3, np.float32)}
    key = NoiseKey(secret=bytes(range(32)))
    sources: list[tuple[NoiseSource, NoiseSource]] = [
        (SeededNoise(seed=7), SeededNoise(seed=7)),
        (key.source("dp", 1, "a"), key.source("dp", 1, "a")),
    ]
    for first, second in sources:
        one, two = (
            add_gaussian_noise(forward, std=1.0, source=first),
            add_gaussian_noise(backward, std=1.0, source=second),
        )
        for name in forward:
            np.testing.assert_array_equal(one[name], two[name])


def test_accountant_matches_opacus_and_grows() -> None:
    ours = PrivacyAccountant(delta=1e-5)
    reference = RDPAccountant()
    previous = 0.0
    for _ in range(3):
        epsilon = ours.record(noise_multiplier=1.2, sample_rate=0.5)
        reference.step(noise_multiplier=1.2, sample_rate=0.5)
        assert epsilon == pytest.approx(reference.get_epsilon(delta=1e-5))
        assert epsilon > previous
        previous = epsilon
    assert ours.epsilon_if(noise_multiplier=1.2, sample_rate=0.5) > ours.epsilon
    restored = PrivacyAccountant(delta=1e-5, history=ours.history)
    assert restored.epsilon == pytest.approx(ours.epsilon)


@pytest.mark.parametrize("strategy", ["scaffold", "fedmedian", "krum"])
def test_impossible_combinations_are_refused_at_parse(strategy: str) -> None:
    with pytest.raises(ValidationError, match="differential privacy cannot be combined"):
        FederationConfig(strategy=StrategyConfig(name=strategy), privacy=PrivacyConfig(mode="central"))


def test_budget_ends_the_run_cleanly(prefect_api: None, mlflow_store: str, tmp_path: Path) -> None:
    from flows.coordinator import federated_training

    # sigma 1.5, every site every round, delta 1e-5: epsilon 2.98 after one round, 4.42 after two,
    # 5.58 after three (Opacus RDP): a budget of 5 allows exactly two rounds.
    privacy = PrivacyConfig(mode="central", clip_norm=0.5, noise_multiplier=1.5, target_epsilon=5.0)
    result = federated_training(
        domain="healthcare", federation=FederationConfig(rounds=5, privacy=privacy), run_name="private"
    )
    assert result.rounds_completed == 2
    assert result.epsilon == pytest.approx(4.4197, rel=1e-3)
    client = MlflowClient(mlflow_store)
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert "privacy budget" in run.data.tags["fedflow.stopped"]
    epsilons = [m.value for m in client.get_metric_history(run.info.run_id, "privacy/epsilon")]
    assert len(epsilons) == 2 and epsilons[0] < epsilons[1] <= 5.0
    assert len(client.search_model_versions("name='healthcare-global'")) == 2


def test_site_clips_and_in_distributed_mode_adds_its_noise(healthcare, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from fedflow.config import LocalTrainConfig
    from fedflow.params import decode

    agent, request = prepared_agent(healthcare, "hungary", tmp_path, local=LocalTrainConfig(epochs=3))

    def norm(**changes: object) -> float:
        return l2_norm(decode(agent.train(request.model_copy(update=changes)).payload))

    plain = norm()
    central = norm(privacy=PrivacyConfig(mode="central", clip_norm=0.1))
    distributed = norm(
        privacy=PrivacyConfig(mode="distributed", clip_norm=0.1, noise_multiplier=1.0), sites_in_round=4
    )
    assert plain > 0.1 and central == pytest.approx(0.1, rel=1e-5)
    assert distributed > 0.5  # noise of sd 0.05 on hundreds of values dwarfs the clipped 0.1


def test_dp_sgd_at_a_site(healthcare, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from site_helpers import FEDERATION

    from fedflow.config import DPSGDConfig, LocalTrainConfig
    from fedflow.params import decode
    from fedflow.site_state import DP_SGD_STEPS, load_site_state

    config = LocalTrainConfig(dp_sgd=DPSGDConfig(noise_multiplier=1.0, max_grad_norm=1.0))
    agent, request = prepared_agent(healthcare, "cleveland", tmp_path, local=config)
    first = agent.train(request)
    again = agent.train(request)  # round 1 run again (a resumed coordinator): the same state
    second = agent.train(request.model_copy(update={"round": 2, "accepted_round": 1}))
    assert l2_norm(decode(first.payload)) > 0
    assert first.metrics["dp_sgd_epsilon"] == pytest.approx(again.metrics["dp_sgd_epsilon"])
    # The site's epsilon covers every step it took in the federation, so it grows.
    assert second.metrics["dp_sgd_epsilon"] > first.metrics["dp_sgd_epsilon"] > 0

    def steps(after: int) -> int:
        state = load_site_state(tmp_path / "state", FEDERATION, "cleveland", before_round=after + 1)
        assert state is not None
        return int(state[DP_SGD_STEPS][0])

    assert steps(2) > steps(1) > 0


@pytest.mark.parametrize("strategy", ["scaffold", "fedprox"])
def test_dp_sgd_refused_with_gradient_changing_strategies(strategy: str) -> None:
    from fedflow.config import DPSGDConfig, LocalTrainConfig

    with pytest.raises(ValidationError, match=r"local\.dp_sgd cannot be combined"):
        FederationConfig(strategy=StrategyConfig(name=strategy), local=LocalTrainConfig(dp_sgd=DPSGDConfig()))
