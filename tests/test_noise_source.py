"""Secret DP noise: the ChaCha20 Gaussian source, the keys each party keeps, and resume."""

import base64
import dataclasses
import logging
import stat
from pathlib import Path

import numpy as np
import pytest
from site_helpers import FEDERATION, engine_plan, in_process_channel, prepared_agent

from domains import Domain
from fedflow.config import DPSGDConfig, FederationConfig, LocalTrainConfig, PrivacyConfig
from fedflow.errors import FedflowError
from fedflow.federation import FederationState, run_federation
from fedflow.federation.memory_recorder import MemoryRecorder
from fedflow.messages import Message, TrainRequest
from fedflow.params import decode
from fedflow.privacy.noise_source import NoiseKey, SecretNoise, stream_key
from fedflow.site_agent import SiteAgent
from fedflow.site_state import site_noise_key
from fedflow.update_path.chain import NOISE_BINDS, NOISE_IGNORES, SiteKeys, noise_binding, site_noise

LOG = logging.getLogger("test_noise_source")
KEY = bytes(range(32))


def test_uniforms_are_53_bits_of_the_chacha20_keystream() -> None:
    # RFC 8439, A.1 test vector 1: key 0, nonce 0, block 0 starts 76 b8 e0 ad a0 f1 3d 90.
    word = int.from_bytes(bytes.fromhex("76b8e0ada0f13d90"), "little")
    expected = ((word >> 11) + 0.5) / 2**53
    assert SecretNoise(key=bytes(32)).uniforms(1)[0] == expected
    assert 0.0 < expected < 1.0


def test_a_sample_is_four_box_muller_samples_summed_and_halved() -> None:
    u = SecretNoise(key=KEY).uniforms(4)
    r = np.sqrt(-2.0 * np.log(u[:2]))
    four = [r[0] * np.cos(2 * np.pi * u[2]), r[1] * np.cos(2 * np.pi * u[3])]
    four += [r[0] * np.sin(2 * np.pi * u[2]), r[1] * np.sin(2 * np.pi * u[3])]
    assert SecretNoise(key=KEY).standard_normal(1)[0] == pytest.approx(sum(four) / 2, abs=1e-15)


def test_secret_noise_is_gaussian_with_the_asked_sd() -> None:
    from scipy import stats

    samples = SecretNoise(key=KEY).normal(0.5, (400, 500))
    assert samples.shape == (400, 500) and samples.dtype == np.float64
    assert samples.mean() == pytest.approx(0.0, abs=0.005)
    assert samples.std() == pytest.approx(0.5, rel=0.01)
    assert stats.kstest(samples.ravel() / 0.5, "norm").pvalue > 0.01


def test_each_stream_is_its_own_and_repeats_only_with_the_same_labels() -> None:
    def draw(key: NoiseKey, *labels: object) -> np.ndarray:
        return key.source(*labels).normal(1.0, (8,))  # type: ignore[arg-type]

    key = NoiseKey(secret=KEY, binding="request-1")
    np.testing.assert_array_equal(draw(key, "dp", 1, "a"), draw(key, "dp", 1, "a"))
    others = [
        draw(key, "dp", 2, "a"),
        draw(key, "dp", 1, "b"),
        draw(key, "dp-central", 1, "a"),
        draw(dataclasses.replace(key, binding="request-2"), "dp", 1, "a"),
        draw(NoiseKey(secret=bytes(32), binding="request-1"), "dp", 1, "a"),
    ]
    for other in others:
        assert not np.allclose(other, draw(key, "dp", 1, "a"))
    assert key.torch_seed("dp-sgd-noise", 1, "a") != key.torch_seed("dp-sgd-sampling", 1, "a")
    with pytest.raises(ValueError, match="32 bytes"):
        stream_key(b"short", "dp", 1, "a")
    assert "secret" not in repr(key) and KEY.hex() not in repr(key)


def test_a_site_makes_its_noise_key_once_per_federation_and_keeps_it_to_itself(tmp_path: Path) -> None:
    key = site_noise_key(tmp_path, "federation-1", "cleveland")
    assert len(key) == 32 and site_noise_key(tmp_path, "federation-1", "cleveland") == key
    path = tmp_path / "sites" / "federation-1" / "cleveland" / "noise.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert site_noise_key(tmp_path, "federation-2", "cleveland") != key
    assert site_noise_key(tmp_path, "federation-1", "hungary") != key
    assert [p.name for p in path.parent.iterdir()] == ["noise.key"], "no temporary file is left behind"


def test_every_field_of_a_train_request_is_bound_to_the_noise_or_said_not_to_shape_it() -> None:
    """A new field must be classified: one that shapes the update but is not bound would let a
    coordinator ask twice for a round with only it changed and cancel the noise."""
    unclassified = set(TrainRequest.model_fields) - set(NOISE_BINDS) - set(NOISE_IGNORES)
    assert not unclassified, f"add {sorted(unclassified)} to NOISE_BINDS or NOISE_IGNORES in chain.py"


def test_the_noise_binding_follows_what_shapes_the_update(healthcare: Domain, tmp_path: Path) -> None:
    _, request = prepared_agent(healthcare, "cleveland", tmp_path)
    same = TrainRequest.model_validate_json(request.model_dump_json())  # as it arrives cross-silo
    assert noise_binding(same) == noise_binding(request)
    for change in [{"sites_in_round": 3}, {"round": 2}, {"privacy": PrivacyConfig(clip_norm=0.5)}]:
        assert noise_binding(request.model_copy(update=change)) != noise_binding(request)


def test_reproducible_noise_is_refused_unless_the_site_accepts_it(healthcare: Domain, tmp_path: Path) -> None:
    agent, request = prepared_agent(healthcare, "cleveland", tmp_path)
    seeded = request.model_copy(
        update={"privacy": PrivacyConfig(mode="distributed", reproducible_noise=True), "sites_in_round": 4}
    )
    with pytest.raises(FedflowError, match=r"refuses privacy\.reproducible_noise"):
        site_noise(seeded, site="cleveland", keys=SiteKeys(noise=KEY))
    assert site_noise(seeded, site="cleveland", keys=SiteKeys(accepts_reproducible_noise=True)) is None
    served = SiteAgent(dataclasses.replace(agent.settings, accepts_reproducible_noise=False))
    with pytest.raises(FedflowError, match=r"refuses privacy\.reproducible_noise"):
        served.train(seeded)
    with pytest.raises(FedflowError, match="holds no secret noise key"):
        site_noise(
            request.model_copy(update={"privacy": PrivacyConfig(mode="distributed")}),
            site="x",
            keys=SiteKeys(),
        )


def test_dp_sgd_runs_opacus_secure_mode_noise_from_the_sites_seeds() -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from fedflow.privacy.dp_sgd import DPSGDSeeds, _make_private

    config = LocalTrainConfig(dp_sgd=DPSGDConfig())
    loader = DataLoader(TensorDataset(torch.zeros(8, 3), torch.zeros(8)), batch_size=4)
    seeds = DPSGDSeeds(noise=2**64 - 5, sampling=7)
    _, optimizer, _ = _make_private(torch.nn.Linear(3, 1), loader, config, seeds, 0)
    assert optimizer.secure_mode is True and optimizer.generator.initial_seed() == seeds.noise
    _, seeded, _ = _make_private(torch.nn.Linear(3, 1), loader, config, None, 0)
    assert seeded.secure_mode is False and seeded.generator.initial_seed() == 1


RUNS = {
    "central": {"privacy": {"mode": "central", "clip_norm": 1.0, "noise_multiplier": 0.5}},
    "distributed": {"privacy": {"mode": "distributed", "clip_norm": 1.0, "noise_multiplier": 0.5}},
    "dp-sgd": {"local": {"dp_sgd": {"noise_multiplier": 1.0}}},
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_round_repeated_after_a_crash_draws_the_same_secret_noise(
    name: str, healthcare: Domain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The coordinator restarts from round 1's checkpoint after the sites trained rounds 2 and 3:
    they train them again and the federation ends with exactly the same model."""
    monkeypatch.setenv("FEDFLOW_STATE_DIR", str(tmp_path / "coordinator"))
    config = FederationConfig.model_validate({"rounds": 3, "seed": 1, "audit": False, **RUNS[name]})
    channel = in_process_channel(healthcare, tmp_path / "sites")
    straight = MemoryRecorder()
    run_federation(engine_plan(healthcare, config, name), channel=channel, recorder=straight, log=LOG)
    after_round_1 = straight.rounds[0].state
    assert len(after_round_1.noise_key) == 32
    resumed = MemoryRecorder()
    plan = engine_plan(healthcare, config, name, resume=after_round_1)
    run_federation(plan, channel=channel, recorder=resumed, log=LOG)
    expected, got = straight.rounds[-1].state.weights, resumed.rounds[-1].state.weights
    for tensor, value in expected.items():
        np.testing.assert_array_equal(got[tensor], value, err_msg=tensor)


def test_the_coordinators_key_is_saved_with_its_checkpoint_and_never_travels(
    healthcare: Domain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDFLOW_STATE_DIR", str(tmp_path / "coordinator"))
    config = FederationConfig.model_validate({"rounds": 2, "seed": 1, "audit": False, **RUNS["distributed"]})
    channel = in_process_channel(healthcare, tmp_path / "sites")
    sent: list[Message] = []
    replied: list[Message] = []
    send = channel.send

    def recording(requests):  # type: ignore[no-untyped-def]
        sent.extend(requests.values())
        handles = send(requests)
        replied.extend(handle.result() for handle in handles.values())  # no site fails here
        return handles

    channel.send = recording  # type: ignore[method-assign]
    recorder = MemoryRecorder()
    run_federation(engine_plan(healthcare, config, "keys"), channel=channel, recorder=recorder, log=LOG)

    state = FederationState.load("keys")
    assert state.noise_key == recorder.rounds[-1].state.noise_key and len(state.noise_key) == 32
    folder = tmp_path / "coordinator" / "runs" / "keys"
    assert stat.S_IMODE((folder / "noise.key").stat().st_mode) == 0o600
    site_keys = [
        (tmp_path / "sites" / site / "state" / "sites" / "keys" / site / "noise.key").read_bytes()
        for site in healthcare.spec.site_names
    ]
    secrets = [state.noise_key, *site_keys]
    spellings = [
        form for key in secrets for form in (key.hex(), base64.b64encode(key).decode(), str(list(key)))
    ]
    travelled = [m.model_dump_json() for m in [*sent, *replied]]
    recorded = [(folder / "state.json").read_text(), repr(recorder.notes), repr(recorder.rounds)]
    for text in [*travelled, *recorded]:
        assert not any(form in text for form in spellings)
    assert len(sent) > 0 and len(replied) > 0


def test_the_same_request_repeated_gives_the_same_update_and_a_new_site_another(
    healthcare: Domain, tmp_path: Path
) -> None:
    privacy = PrivacyConfig(mode="distributed", clip_norm=0.1, noise_multiplier=1.0)
    agent, request = prepared_agent(
        healthcare, "hungary", tmp_path / "one", privacy=privacy, sites_in_round=4
    )
    other, _ = prepared_agent(healthcare, "hungary", tmp_path / "two")
    first = decode(agent.train(request).payload)
    again = decode(SiteAgent(agent.settings).train(request).payload)
    elsewhere = decode(other.train(request).payload)
    for name in first:
        np.testing.assert_array_equal(again[name], first[name], err_msg=name)
    assert any(not np.allclose(elsewhere[n], first[n]) for n in first)
    assert len(site_noise_key(tmp_path / "one" / "state", FEDERATION, "hungary")) == 32
