"""The Codec protocol: how a site's delta is compressed for the uplink and restored."""

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from fedflow.capabilities import Refusal
from fedflow.errors import PayloadError
from fedflow.params import NamedArrays


@runtime_checkable
class Codec(Protocol):
    """Compresses a delta into named wire arrays (sent as safetensors) and restores it."""

    name: str
    # DENSE_UPDATES when every value travels at full precision (what secure aggregation's masks need).
    capabilities: frozenset[str]
    refuses: tuple[Refusal, ...]

    def compress(
        self, delta: Mapping[str, np.ndarray], *, residual: Mapping[str, np.ndarray], seed: int
    ) -> tuple[NamedArrays, NamedArrays]:
        """Return the wire arrays and the site's new residual (empty for codecs without memory)."""
        ...

    def decompress(self, wire: Mapping[str, np.ndarray], *, like: Mapping[str, np.ndarray]) -> NamedArrays:
        """The delta, shaped and typed like `like`; malformed wire arrays raise PayloadError."""
        ...


def expect_wire(
    wire: Mapping[str, np.ndarray], spec: Mapping[str, tuple[type, int | None]], codec: str
) -> None:
    """Refuse wire arrays whose names, dtypes or lengths are not what the codec sends."""
    if set(wire) != set(spec):
        raise PayloadError(f"a {codec} update must hold tensors {sorted(spec)}, got {sorted(wire)}")
    for name, (dtype, length) in spec.items():
        array = wire[name]
        if array.dtype != np.dtype(dtype) or array.ndim != 1 or (length is not None and array.size != length):
            raise PayloadError(
                f"{codec} tensor {name!r} must be 1-d {np.dtype(dtype)}"
                + (f" of {length} values" if length is not None else "")
                + f", got {array.dtype}{list(array.shape)}"
            )
