"""Top-k sparsification with error feedback: Stich, Cordonnier & Jaggi, "Sparsified SGD with
Memory", NeurIPS 2018 (and Lin et al., "Deep Gradient Compression", ICLR 2018).

The site adds what it did not send in earlier rounds (its residual, which never leaves it) to
this round's delta, sends the k largest values by magnitude with their positions, and keeps
the rest as the new residual. Every value is eventually sent, only late.
"""

import math
from collections.abc import Mapping

import numpy as np

from fedflow.capabilities import Refusal
from fedflow.compression.base import expect_wire
from fedflow.errors import PayloadError
from fedflow.params import NamedArrays, flatten, unflatten

RESIDUAL = "residual"


class TopK:
    """Positions (uint16 or uint32) and values (float16 or float32) of the k largest entries."""

    name = "topk"
    capabilities: frozenset[str] = frozenset()  # not dense: a sparse subset of the values travel
    refuses: tuple[Refusal, ...] = ()

    def __init__(
        self, *, fraction: float = 0.05, values: str = "float16", error_feedback: bool = True
    ) -> None:
        if not 0 < fraction <= 1:
            raise ValueError(f"topk fraction must be in (0, 1], got {fraction}")
        if values not in ("float16", "float32"):
            raise ValueError(f"topk values must be 'float16' or 'float32', got {values!r}")
        self.fraction = fraction
        self.values = values
        self.error_feedback = error_feedback

    @staticmethod
    def _index_dtype(length: int) -> type:
        return np.uint16 if length <= 2**16 else np.uint32

    def kept(self, length: int) -> int:
        """How many values a site sends for a model of `length` values."""
        return max(1, math.ceil(self.fraction * length))

    def compress(
        self, delta: Mapping[str, np.ndarray], *, residual: Mapping[str, np.ndarray], seed: int
    ) -> tuple[NamedArrays, NamedArrays]:
        """The top-k of delta + residual, and the new residual (what was not sent)."""
        vector = flatten(delta)
        memory = residual.get(RESIDUAL)
        if self.error_feedback and memory is not None and memory.shape == vector.shape:
            vector = vector + memory
        k = self.kept(vector.size)
        positions = np.sort(np.argpartition(np.abs(vector), vector.size - k)[vector.size - k :])
        chosen = vector[positions]
        if self.values == "float16":  # beyond +-65504 float16 is inf: clip, and keep the rest as residual
            limit = float(np.finfo(np.float16).max)
            chosen = np.clip(chosen, -limit, limit)
        values = chosen.astype(self.values)
        sent = np.zeros_like(vector)
        sent[positions] = values.astype(np.float64)  # what the coordinator will see, rounding included
        wire = {"indices": positions.astype(self._index_dtype(vector.size)), "values": values}
        return wire, ({RESIDUAL: vector - sent} if self.error_feedback else {})

    def decompress(self, wire: Mapping[str, np.ndarray], *, like: Mapping[str, np.ndarray]) -> NamedArrays:
        """A dense delta with the sent values at their positions, zeros elsewhere."""
        length = sum(int(np.size(v)) for v in like.values())
        k = self.kept(length)
        expect_wire(
            wire,
            {"indices": (self._index_dtype(length), k), "values": (np.dtype(self.values).type, k)},
            self.name,
        )
        positions = wire["indices"].astype(np.int64)
        if positions.size and (positions.max() >= length or np.unique(positions).size != positions.size):
            raise PayloadError(f"topk positions must be distinct and below {length}")
        dense = np.zeros(length)
        dense[positions] = wire["values"].astype(np.float64)
        return unflatten(dense, like)
