"""No compression: the delta travels as float32 arrays under its parameter names."""

from collections.abc import Mapping

import numpy as np

from fedflow.capabilities import DENSE_UPDATES, Refusal
from fedflow.params import NamedArrays, check_compatible


class Identity:
    """The default codec."""

    name = "none"
    capabilities = frozenset({DENSE_UPDATES})
    refuses: tuple[Refusal, ...] = ()

    def compress(
        self, delta: Mapping[str, np.ndarray], *, residual: Mapping[str, np.ndarray], seed: int
    ) -> tuple[NamedArrays, NamedArrays]:
        """The delta as it is."""
        return dict(delta), {}

    def decompress(self, wire: Mapping[str, np.ndarray], *, like: Mapping[str, np.ndarray]) -> NamedArrays:
        """The delta as it came, once its names, shapes and dtypes match the model."""
        check_compatible(wire, like)
        return dict(wire)
