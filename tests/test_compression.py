"""Uplink codecs: contract tests over the registry, and each codec's own promise."""

import numpy as np
import pytest
from pydantic import ValidationError

from fedflow.compression import CODECS, build_codec
from fedflow.config import FederationConfig
from fedflow.errors import PayloadError
from fedflow.params import decode, encode

LIKE = {
    "layer.bias": np.zeros(3, np.float32),
    "layer.weight": np.zeros((3, 5), np.float32),
    "out.weight": np.zeros((1, 3), np.float32),
}


def _delta(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0, 0.1, size=v.shape).astype(np.float32) for k, v in LIKE.items()}


@pytest.mark.parametrize("name", sorted(CODECS))
def test_every_codec_round_trips_through_safetensors_to_the_model_shapes(name: str) -> None:
    codec = build_codec(name)
    wire, _ = codec.compress(_delta(), residual={}, seed=1)
    restored = codec.decompress(decode(encode(wire)), like=LIKE)
    assert {k: (v.shape, v.dtype) for k, v in restored.items()} == {
        k: (v.shape, v.dtype) for k, v in LIKE.items()
    }
    assert all(np.all(np.isfinite(v)) for v in restored.values())


@pytest.mark.parametrize("name", sorted(CODECS))
def test_every_codec_refuses_a_wire_format_that_is_not_its_own(name: str) -> None:
    codec = build_codec(name)
    foreign = {"something": np.zeros(4, np.float64)}
    with pytest.raises(PayloadError):
        codec.decompress(foreign, like=LIKE)


@pytest.mark.parametrize("name", sorted(CODECS))
def test_every_codec_sends_no_more_bytes_than_plain(name: str) -> None:
    delta = _delta()
    plain = len(encode(delta))
    wire, _ = build_codec(name).compress(delta, residual={}, seed=0)
    assert len(encode(wire)) <= plain


def test_fp16_error_is_within_half_precision() -> None:
    delta = _delta()
    codec = build_codec("fp16")
    restored = codec.decompress(codec.compress(delta, residual={}, seed=0)[0], like=LIKE)
    for name in delta:
        np.testing.assert_allclose(restored[name], delta[name], rtol=2**-10, atol=1e-7)


def test_int8_is_unbiased_and_within_one_level() -> None:
    delta = _delta()
    codec = build_codec("int8")
    draws = [codec.decompress(codec.compress(delta, residual={}, seed=s)[0], like=LIKE) for s in range(400)]
    for name, value in delta.items():
        level = np.max(np.abs(value)) / 127
        assert np.all(np.abs(draws[0][name] - value) <= level * (1 + 1e-5))
        mean = np.mean([d[name] for d in draws], axis=0)
        np.testing.assert_allclose(mean, value, atol=level * 0.2)  # 400 draws: sd of the mean is level/40


def test_topk_keeps_the_largest_values_and_feeds_back_the_rest() -> None:
    codec = build_codec("topk", {"fraction": 0.2, "values": "float32"})
    delta = _delta()
    flat = np.concatenate([delta[k].ravel() for k in sorted(delta)]).astype(np.float64)
    wire, residual = codec.compress(delta, residual={}, seed=0)
    assert wire["indices"].dtype == np.uint16 and wire["indices"].size == 5  # ceil(0.2 * 21)
    assert set(wire["indices"].tolist()) == set(np.argsort(-np.abs(flat))[:5].tolist())
    restored = codec.decompress(wire, like=LIKE)
    sent = np.concatenate([restored[k].ravel() for k in sorted(restored)])
    np.testing.assert_allclose(sent + residual["residual"], flat, atol=1e-7)
    # Error feedback: over rounds, what was sent plus what is left equals everything computed.
    total_sent, total_delta, memory = np.zeros_like(flat), np.zeros_like(flat), residual
    total_sent += sent
    total_delta += flat
    for round_number in range(1, 6):
        delta = _delta(round_number)
        wire, memory = codec.compress(delta, residual=memory, seed=round_number)
        restored = codec.decompress(wire, like=LIKE)
        total_sent += np.concatenate([restored[k].ravel() for k in sorted(restored)])
        total_delta += np.concatenate([delta[k].ravel() for k in sorted(delta)])
    np.testing.assert_allclose(total_sent + memory["residual"], total_delta, atol=1e-6)


def test_topk_refuses_out_of_range_or_repeated_positions() -> None:
    codec = build_codec("topk", {"fraction": 0.1})
    k = codec.kept(21)  # type: ignore[attr-defined]
    bad = {"indices": np.full(k, 99, np.uint16), "values": np.zeros(k, np.float16)}
    with pytest.raises(PayloadError, match="below 21"):
        codec.decompress(bad, like=LIKE)
    repeated = {"indices": np.zeros(k, np.uint16), "values": np.zeros(k, np.float16)}
    with pytest.raises(PayloadError, match="distinct"):
        codec.decompress(repeated, like=LIKE)


def test_config_refuses_unknown_codecs_options_and_secure_aggregation() -> None:
    with pytest.raises(ValidationError, match="unknown codec"):
        FederationConfig.model_validate({"compression": {"codec": "zip"}})
    with pytest.raises(ValidationError, match="fraction"):
        FederationConfig.model_validate({"compression": {"codec": "topk", "options": {"fraction": 2}}})
    with pytest.raises(ValidationError, match="cannot be combined with secure aggregation"):
        FederationConfig.model_validate(
            {"compression": {"codec": "int8"}, "secure_aggregation": {"enabled": True}}
        )


def test_a_compressed_federation_sends_fewer_bytes_and_keeps_the_residual_at_the_site(
    prefect_api: None, mlflow_store: str
) -> None:
    from fedflow.checkpoint import load_checkpoint, state_root
    from fedflow.site_state import UPLINK_RESIDUAL, load_site_state
    from flows.coordinator import federated_training

    def run(name: str, compression: dict[str, object]) -> list[dict[str, float]]:
        config = FederationConfig.model_validate(
            {"rounds": 3, "seed": 2, "audit": False, "compression": compression}
        )
        federated_training(domain="healthcare", federation=config, run_name=name)
        return load_checkpoint(name)[0].history

    plain = run("plain", {})
    sparse = run("sparse", {"codec": "topk", "options": {"fraction": 0.05}})
    assert plain[0]["network/uplink_compression"] == pytest.approx(1.0)
    for before, after in zip(plain, sparse, strict=True):
        assert after["network/bytes_received"] * 5 < before["network/bytes_received"]
        assert after["network/uplink_compression"] > 5
    residual = load_site_state(state_root(), "sparse", "cleveland", before_round=4)
    assert residual is not None and np.abs(residual[UPLINK_RESIDUAL]).sum() > 0
    assert sparse[-1]["global/roc_auc"] > 0.6  # still learns


def test_topk_float16_clips_huge_values_and_keeps_the_excess_as_residual() -> None:
    codec = build_codec("topk", {"fraction": 0.2})
    delta = {name: np.zeros_like(value) for name, value in LIKE.items()}
    delta["layer.bias"] = np.array([1e6, 0.0, 0.0], np.float32)
    wire, residual = codec.compress(delta, residual={}, seed=0)
    restored = codec.decompress(wire, like=LIKE)
    assert all(np.all(np.isfinite(v)) for v in restored.values())
    sent = np.concatenate([restored[k].ravel() for k in sorted(restored)])
    assert sent.max() == pytest.approx(65504.0) and residual["residual"].max() == pytest.approx(1e6 - 65504.0)
