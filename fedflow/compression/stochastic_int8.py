"""8-bit stochastic quantisation with a scale per tensor (QSGD-style: Alistarh et al., "QSGD:
Communication-Efficient SGD via Gradient Quantization and Encoding", NeurIPS 2017).

x becomes q = floor(x / s + u), u ~ U[0, 1), with s = max|x| / 127, so E[q * s] = x: the
average over sites stays unbiased. 4x fewer bytes than float32.
"""

from collections.abc import Mapping

import numpy as np

from fedflow.capabilities import Refusal
from fedflow.compression.base import expect_wire
from fedflow.errors import PayloadError
from fedflow.params import NamedArrays, unflatten

LEVELS = 127


class StochasticInt8:
    """int8 values and one float32 scale per tensor (tensors in name order)."""

    name = "int8"
    capabilities: frozenset[str] = frozenset()  # not dense: 8-bit values travel
    refuses: tuple[Refusal, ...] = ()

    def compress(
        self, delta: Mapping[str, np.ndarray], *, residual: Mapping[str, np.ndarray], seed: int
    ) -> tuple[NamedArrays, NamedArrays]:
        """One flat int8 vector and the per-tensor scales."""
        rng = np.random.default_rng(seed)
        names = sorted(delta)
        scales = np.array(
            [float(np.max(np.abs(delta[n]))) / LEVELS if np.size(delta[n]) else 0.0 for n in names],
            dtype=np.float32,
        )
        parts = []
        for name, scale in zip(names, scales, strict=True):
            values = np.asarray(delta[name], dtype=np.float64).ravel()
            if scale == 0:
                parts.append(np.zeros(values.size, dtype=np.int8))
                continue
            levels = np.floor(values / float(scale) + rng.random(values.size))
            parts.append(np.clip(levels, -LEVELS, LEVELS).astype(np.int8))
        return {"q": np.concatenate(parts), "scales": scales}, {}

    def decompress(self, wire: Mapping[str, np.ndarray], *, like: Mapping[str, np.ndarray]) -> NamedArrays:
        """q times its tensor's scale, shaped like the model."""
        names = sorted(like)
        sizes = [int(np.size(like[n])) for n in names]
        expect_wire(wire, {"q": (np.int8, sum(sizes)), "scales": (np.float32, len(names))}, self.name)
        scales = wire["scales"]
        if not np.all(np.isfinite(scales)) or np.any(scales < 0):
            raise PayloadError("int8 scales must be finite and non-negative")
        per_value = np.repeat(scales.astype(np.float64), sizes)
        return unflatten(wire["q"].astype(np.float64) * per_value, like)
