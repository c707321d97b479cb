"""Half precision: every value cast to IEEE float16 (2x fewer bytes; relative error 2^-11)."""

from collections.abc import Mapping

import numpy as np

from fedflow.capabilities import Refusal
from fedflow.errors import PayloadError
from fedflow.params import NamedArrays


class HalfPrecision:
    """fp16 on the wire, the model's dtype after decompression."""

    name = "fp16"
    capabilities: frozenset[str] = frozenset()  # not dense: 16-bit values travel
    refuses: tuple[Refusal, ...] = ()

    def compress(
        self, delta: Mapping[str, np.ndarray], *, residual: Mapping[str, np.ndarray], seed: int
    ) -> tuple[NamedArrays, NamedArrays]:
        """Each array cast to float16 (values beyond +-65504 would overflow: they are clipped)."""
        limit = float(np.finfo(np.float16).max)
        return {k: np.clip(v, -limit, limit).astype(np.float16) for k, v in delta.items()}, {}

    def decompress(self, wire: Mapping[str, np.ndarray], *, like: Mapping[str, np.ndarray]) -> NamedArrays:
        """Back to the model's dtypes after checking names, shapes and the float16 dtype."""
        if set(wire) != set(like):
            raise PayloadError(f"an fp16 update must hold {sorted(like)}, got {sorted(wire)}")
        out: NamedArrays = {}
        for name, template in like.items():
            array = wire[name]
            if array.dtype != np.float16 or array.shape != np.shape(template):
                raise PayloadError(
                    f"fp16 tensor {name!r} must be float16{list(np.shape(template))}, "
                    f"got {array.dtype}{list(array.shape)}"
                )
            out[name] = array.astype(np.asarray(template).dtype)
        return out
