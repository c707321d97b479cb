"""Safetensors encoding of updates, and refusal of anything else without deserialising it."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from fedflow.errors import PayloadError
from fedflow.messages import TrainReply
from fedflow.params import decode, encode, get_weights, set_weights
from fedflow.rounds import check_update


def test_round_trip_preserves_names_shapes_dtypes_and_values() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    weights = get_weights(model)
    decoded = decode(encode(weights), like=weights)
    assert decoded.keys() == weights.keys()
    for name in weights:
        assert decoded[name].dtype == weights[name].dtype
        np.testing.assert_array_equal(decoded[name], weights[name])
    other = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    set_weights(other, decoded)
    x = torch.randn(5, 3)
    torch.testing.assert_close(other(x), model(x))


class _Exploit:
    """Unpickling this would create a file: proof that the payload was deserialised."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def test_pickle_payload_is_rejected_without_being_deserialised(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    payload = pickle.dumps({"w": _Exploit(marker)})
    with pytest.raises(PayloadError, match="not safetensors"):
        decode(payload)
    assert not marker.exists()
    # A torch.save file is a zip of pickles: refused the same way.
    buffer = tmp_path / "update.pt"
    torch.save({"w": torch.zeros(2)}, buffer)
    with pytest.raises(PayloadError):
        decode(buffer.read_bytes())


@pytest.mark.parametrize(
    "payload", [b"", b"12345678", b"\x10\x00\x00\x00\x00\x00\x00\x00[1, 2, 3, 4, 5, 6]x"]
)
def test_garbage_payloads_are_rejected(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        decode(payload)


def test_shape_mismatch_is_rejected() -> None:
    like = {"w": np.zeros((2, 2), np.float32)}
    with pytest.raises(PayloadError, match="shape"):
        decode(encode({"w": np.zeros((3, 2), np.float32)}), like=like)
    with pytest.raises(PayloadError, match="missing"):
        decode(encode({"v": np.zeros((2, 2), np.float32)}), like=like)


def test_check_update_rejects_non_finite_values() -> None:
    like = {"w": np.zeros(3, np.float32)}
    bad = TrainReply(num_examples=4, payload=encode({"w": np.array([0, np.nan, 1], np.float32)}))
    with pytest.raises(PayloadError, match="non-finite"):
        check_update("x", bad, like)
    good = TrainReply(num_examples=4, payload=encode({"w": np.ones(3, np.float32)}))
    assert check_update("x", good, like).num_examples == 4
