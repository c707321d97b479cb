"""Coordinate-wise trimmed mean: Yin, Chen, Ramchandran & Bartlett, "Byzantine-Robust
Distributed Learning: Towards Optimal Statistical Rates", ICML 2018 (arXiv:1803.01498).

For every coordinate, the `trim` fraction of largest and of smallest site values are dropped
and the rest averaged. Needs the individual updates (no secure aggregation).
"""

from collections.abc import Mapping, Sequence

import numpy as np

from fedflow.aggregate import trimmed_mean
from fedflow.params import NamedArrays, add
from fedflow.strategies.base import TrainSettings
from fedflow.update import DecodedUpdate


class FedTrimmedMean:
    """Element-wise trimmed mean of the deltas."""

    name = "fedtrimmedmean"
    averaging = True
    site_extras: tuple[str, ...] = ()

    def __init__(self, *, trim: float = 0.2) -> None:
        if not 0 <= trim < 0.5:
            raise ValueError(f"trim must be in [0, 0.5), got {trim}")
        self.trim = trim

    def setup(self, global_weights: Mapping[str, np.ndarray], *, num_sites: int) -> None:
        """Stateless."""

    def configure_train(self, round_number: int) -> TrainSettings:
        """Plain local training."""
        return {}

    def broadcast(self) -> NamedArrays:
        """Nothing besides the weights."""
        return {}

    def aggregate(
        self, round_number: int, global_weights: Mapping[str, np.ndarray], updates: Sequence[DecodedUpdate]
    ) -> NamedArrays:
        """Global weights plus the trimmed-mean delta."""
        if not updates:
            raise ValueError("no updates to aggregate")
        return add(global_weights, trimmed_mean([u.delta for u in updates], trim=self.trim))

    def state(self) -> NamedArrays:
        """Stateless."""
        return {}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Stateless."""
