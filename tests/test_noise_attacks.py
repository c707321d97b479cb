"""Attacks on differential-privacy noise: whoever knows the federation's seed (every site, the
coordinator, any reader of the MLflow params) tries to regenerate the noise and strip it.

Each attack uses only what travels or is logged: the seed, the config, the participants, the
global models. Noise drawn from a secret key leaves it nothing; the reproducible switch for
experiments brings the old, seeded noise back (and the attacks with it).
"""

import logging
from pathlib import Path

import numpy as np
import pytest
from site_helpers import engine_plan, in_process_channel, prepared_agent

from domains import Domain
from fedflow.config import DPSGDConfig, FederationConfig, LocalTrainConfig, PrivacyConfig
from fedflow.errors import FedflowError
from fedflow.federation import run_federation
from fedflow.federation.memory_recorder import MemoryRecorder
from fedflow.params import NamedArrays, decode
from fedflow.rounds import initial_weights
from fedflow.seeding import derive_seed
from fedflow.site_agent import SiteAgent
from fedflow.tasks import get_task

LOG = logging.getLogger("test_noise_attacks")
SITE = "hungary"
CLIP, SIGMA, SITES_IN_ROUND = 0.1, 1.0, 4
STD = SIGMA * CLIP / np.sqrt(SITES_IN_ROUND)  # one site's share of the round's noise


def seeded_noise(like: NamedArrays, *, std: float, seed: int) -> NamedArrays:
    """The attacker's copy of the seeded recipe (numpy's generator, names in sorted order)."""
    rng = np.random.default_rng(seed)
    return {name: rng.normal(0.0, std, size=like[name].shape) for name in sorted(like)}


def rms(a: NamedArrays, b: NamedArrays) -> float:
    """Root mean square of a - b over every value."""
    diff = np.concatenate([(np.asarray(a[n], np.float64) - np.asarray(b[n], np.float64)).ravel() for n in a])
    return float(np.sqrt(np.mean(diff**2)))


def _update(agent: SiteAgent, request, **changes: object) -> NamedArrays:  # type: ignore[no-untyped-def]
    return decode(agent.train(request.model_copy(update=changes)).payload)


def _distributed(**changes: object) -> PrivacyConfig:
    return PrivacyConfig(mode="distributed", clip_norm=CLIP, noise_multiplier=SIGMA, **changes)  # type: ignore[arg-type]


def _clipped_only(healthcare: Domain, folder: Path) -> NamedArrays:
    """The site's clipped delta without noise (central mode: the site only clips)."""
    agent, request = prepared_agent(healthcare, SITE, folder, local=LocalTrainConfig(epochs=3))
    return _update(agent, request, privacy=PrivacyConfig(mode="central", clip_norm=CLIP))


def test_the_coordinator_cannot_regenerate_a_sites_distributed_noise(
    healthcare: Domain, tmp_path: Path
) -> None:
    clean = _clipped_only(healthcare, tmp_path / "clean")
    agent, request = prepared_agent(healthcare, SITE, tmp_path / "site", local=LocalTrainConfig(epochs=3))
    noisy = _update(agent, request, privacy=_distributed(), sites_in_round=SITES_IN_ROUND)
    # The coordinator knows the seed (it sent it) and the recipe: it subtracts the regenerated noise.
    guess = seeded_noise(noisy, std=STD, seed=derive_seed(request.rows.seed, "dp", request.round, SITE))
    recovered = {name: noisy[name] - guess[name] for name in noisy}
    error = rms(recovered, clean)
    assert error > 0.5 * STD, f"the coordinator recovered the clipped delta to {error:.2e}"
    assert rms(noisy, clean) == pytest.approx(STD, rel=0.25)  # the noise is there, at its scale


def test_two_requests_for_one_round_do_not_cancel_the_noise(healthcare: Domain, tmp_path: Path) -> None:
    """Ask twice for round 1, once with m = 4 sites and once with m = 1: with the same noise z,
    A = c + s4 z and B = c + s1 z give c = A - s4 (A - B) / (s4 - s1) exactly."""
    clean = _clipped_only(healthcare, tmp_path / "clean")
    agent, request = prepared_agent(healthcare, SITE, tmp_path / "site", local=LocalTrainConfig(epochs=3))
    first = _update(agent, request, privacy=_distributed(), sites_in_round=SITES_IN_ROUND)
    try:
        second = _update(agent, request, privacy=_distributed(), sites_in_round=1)
    except FedflowError:
        return  # a site that refuses to answer a round twice gives nothing to cancel with
    s_first, s_second = STD, SIGMA * CLIP
    solved = {n: first[n] - s_first * (first[n] - second[n]) / (s_first - s_second) for n in first}
    error = rms(solved, clean)
    assert error > 0.5 * STD, f"two answers for one round recovered the clipped delta to {error:.2e}"


def _central_run(healthcare: Domain, folder: Path, sigma: float):  # type: ignore[no-untyped-def]
    config = FederationConfig.model_validate(
        {
            "rounds": 1,
            "seed": 4,
            "audit": False,
            "privacy": {"mode": "central", "clip_norm": 1.0, "noise_multiplier": sigma},
        }
    )
    recorder = MemoryRecorder(checkpoints=False)
    channel = in_process_channel(healthcare, folder)
    run_federation(engine_plan(healthcare, config, "central"), channel=channel, recorder=recorder, log=LOG)
    return config, recorder


def _round_zero(healthcare: Domain, config: FederationConfig, recorder: MemoryRecorder) -> NamedArrays:
    """The seeded round-0 model, rebuilt from the logged seed and preprocessing."""
    assert recorder.preprocessing is not None
    task = get_task(healthcare.spec.task)
    return initial_weights(
        healthcare.build_model,
        input_dim=len(recorder.preprocessing.preprocessor.feature_names),
        output_dim=task.output_dim(healthcare.spec),
        options=healthcare.spec.model,
        seed=derive_seed(config.seed, "init"),
    )


def test_a_reader_of_the_mlflow_params_cannot_strip_the_central_noise(
    healthcare: Domain, tmp_path: Path
) -> None:
    config, noisy = _central_run(healthcare, tmp_path / "noisy", sigma=0.5)
    _, quiet = _central_run(healthcare, tmp_path / "quiet", sigma=1e-9)  # the same clipped deltas, no noise
    before = _round_zero(healthcare, config, noisy)
    after, clean = noisy.rounds[0].state.weights, quiet.rounds[0].state.weights
    participants = noisy.rounds[0].participants
    std = 0.5 * 1.0 / np.sqrt(len(participants))  # per update; FedAvg under DP weighs every site the same
    # The reader knows the seed, the participants and both global models (all in MLflow).
    guesses = [
        seeded_noise(before, std=std, seed=derive_seed(config.seed, "dp-central", 1, site))
        for site in participants
    ]
    recovered = {n: after[n] - before[n] - np.mean([g[n] for g in guesses], axis=0) for n in after}
    mean_clipped = {n: clean[n] - before[n] for n in clean}
    error = rms(recovered, mean_clipped)
    noise_of_the_mean = std / np.sqrt(len(participants))
    assert error > 0.5 * noise_of_the_mean, f"the reader recovered the mean clipped delta to {error:.2e}"


def test_the_coordinator_cannot_know_the_dp_sgd_noise(healthcare: Domain, tmp_path: Path) -> None:
    """Two sites with the same rows answering the same request: equal updates mean the noise is a
    function of what the coordinator knows. The same site asked again (a resumed round) repeats."""
    local = LocalTrainConfig(dp_sgd=DPSGDConfig(noise_multiplier=1.0, max_grad_norm=1.0))
    one, request = prepared_agent(healthcare, SITE, tmp_path / "one", local=local)
    other, _ = prepared_agent(healthcare, SITE, tmp_path / "other", local=local)
    first, second = _update(one, request), _update(other, request)
    difference = max(float(np.abs(first[n] - second[n]).max()) for n in first)
    assert difference > 1e-3, "two runs of the same request trained with the same DP-SGD noise"
    restarted = SiteAgent(one.settings)  # the site's process restarts; its state folder stays
    again = _update(restarted, request)
    for name in first:
        np.testing.assert_array_equal(again[name], first[name], err_msg=name)
