"""Model state as named NumPy arrays, and their safetensors encoding (never pickle)."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from safetensors.numpy import load as _safetensors_load
from safetensors.numpy import save as _safetensors_save

from fedflow.errors import PayloadError

if TYPE_CHECKING:  # torch is imported where weights meet a module, not by config-only commands
    import torch

NamedArrays = dict[str, np.ndarray]

# A safetensors payload starts with the header length (u64, little-endian) and a JSON header.
_HEADER_LENGTH_BYTES = 8
_MAX_HEADER_BYTES = 100 * 1024 * 1024


@runtime_checkable
class FederatedState(Protocol):
    """A module that federates only part of its state (a frozen base model with adapters)."""

    def federated_state(self) -> dict[str, torch.Tensor]:
        """The tensors that travel, by name."""
        ...

    def load_federated_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Set exactly those tensors."""
        ...


def get_weights(model: torch.nn.Module) -> NamedArrays:
    """Copy a module's federated tensors (all parameters and buffers by default) into named arrays."""
    state = model.federated_state() if isinstance(model, FederatedState) else model.state_dict()
    return {name: tensor.detach().cpu().numpy().copy() for name, tensor in state.items()}


def set_weights(model: torch.nn.Module, weights: Mapping[str, np.ndarray]) -> None:
    """Load named arrays into a module; names and shapes must match exactly."""
    import torch

    state = {name: torch.from_numpy(np.ascontiguousarray(array)) for name, array in weights.items()}
    if isinstance(model, FederatedState):
        model.load_federated_state(state)
    else:
        model.load_state_dict(state, strict=True)


def encode(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Encode named arrays as safetensors bytes."""
    return _safetensors_save({name: np.ascontiguousarray(array) for name, array in arrays.items()})


def _check_header(payload: bytes) -> None:
    """Reject anything that is not shaped like safetensors before any parser touches it."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise PayloadError(f"an update must be bytes, got {type(payload).__name__}")
    if len(payload) < _HEADER_LENGTH_BYTES + 2:
        raise PayloadError(f"payload of {len(payload)} bytes is too short to be safetensors")
    (header_length,) = struct.unpack("<Q", bytes(payload[:_HEADER_LENGTH_BYTES]))
    if header_length > min(_MAX_HEADER_BYTES, len(payload) - _HEADER_LENGTH_BYTES):
        raise PayloadError("payload is not safetensors (bad header length); refusing to deserialise it")
    header = bytes(payload[_HEADER_LENGTH_BYTES : _HEADER_LENGTH_BYTES + header_length])
    try:
        parsed = json.loads(header)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PayloadError(
            "payload is not safetensors (header is not JSON); refusing to deserialise it"
        ) from error
    if not isinstance(parsed, dict):
        raise PayloadError("payload is not safetensors (header is not a JSON object)")


def decode(payload: bytes, *, like: Mapping[str, np.ndarray] | None = None) -> NamedArrays:
    """Decode safetensors bytes; with `like`, also require the same names, shapes and dtypes."""
    _check_header(payload)
    try:
        arrays = dict(_safetensors_load(bytes(payload)))
    except Exception as error:  # safetensors raises its own error types
        raise PayloadError(f"payload is not valid safetensors: {error}") from error
    if like is not None:
        check_compatible(arrays, like)
    return arrays


def check_compatible(arrays: Mapping[str, np.ndarray], like: Mapping[str, np.ndarray]) -> None:
    """Raise PayloadError unless `arrays` has exactly the names, shapes and dtypes of `like`."""
    missing = sorted(set(like) - set(arrays))
    extra = sorted(set(arrays) - set(like))
    if missing or extra:
        raise PayloadError(f"update tensors do not match the model: missing {missing}, unexpected {extra}")
    for name, reference in like.items():
        got = arrays[name]
        if got.shape != reference.shape or got.dtype != reference.dtype:
            raise PayloadError(
                f"tensor {name!r} has shape {got.shape} and dtype {got.dtype}; "
                f"expected {reference.shape} and {reference.dtype}"
            )


def all_finite(arrays: Mapping[str, np.ndarray]) -> bool:
    """True when every floating-point value of every array is finite."""
    return all(bool(np.isfinite(a).all()) for a in arrays.values() if np.issubdtype(a.dtype, np.floating))


def subtract(left: Mapping[str, np.ndarray], right: Mapping[str, np.ndarray]) -> NamedArrays:
    """Name-wise `left - right`."""
    return {name: left[name] - right[name] for name in left}


def add(left: Mapping[str, np.ndarray], right: Mapping[str, np.ndarray]) -> NamedArrays:
    """Name-wise `left + right`, keeping the dtype of `left`."""
    return {name: (left[name] + right[name]).astype(left[name].dtype) for name in left}


def count_parameters(arrays: Mapping[str, np.ndarray]) -> int:
    """Number of scalar values in the arrays."""
    return int(sum(a.size for a in arrays.values()))


def flatten(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """All arrays in name order as one float64 vector."""
    return np.concatenate([np.asarray(arrays[name], dtype=np.float64).ravel() for name in sorted(arrays)])


def unflatten(vector: np.ndarray, like: Mapping[str, np.ndarray]) -> NamedArrays:
    """The inverse of `flatten`, shaped and typed like `like`."""
    out: NamedArrays = {}
    offset = 0
    for name in sorted(like):
        template = np.asarray(like[name])
        out[name] = vector[offset : offset + template.size].reshape(template.shape).astype(template.dtype)
        offset += template.size
    if offset != vector.size:
        raise ValueError(f"vector of {vector.size} values does not fit arrays of {offset} values")
    return out
