"""Coordinate-wise trimmed mean: Yin, Chen, Ramchandran & Bartlett, "Byzantine-Robust
Distributed Learning: Towards Optimal Statistical Rates", ICML 2018 (arXiv:1803.01498).

For every coordinate, the `trim` fraction of largest and of smallest site values are dropped
and the rest averaged. Needs the individual updates (no secure aggregation).
"""

from collections.abc import Mapping, Sequence

import numpy as np

from fedflow.aggregate import trimmed_mean
from fedflow.capabilities import READS_INDIVIDUAL_UPDATES
from fedflow.params import NamedArrays, add
from fedflow.strategies.base import PlainServer
from fedflow.update import DecodedUpdate


class FedTrimmedMean(PlainServer):
    """Element-wise trimmed mean of the deltas."""

    name = "fedtrimmedmean"
    capabilities = frozenset({READS_INDIVIDUAL_UPDATES})

    def __init__(self, *, trim: float = 0.2) -> None:
        if not 0 <= trim < 0.5:
            raise ValueError(f"trim must be in [0, 0.5), got {trim}")
        self.trim = trim

    def aggregate(
        self, round_number: int, global_weights: Mapping[str, np.ndarray], updates: Sequence[DecodedUpdate]
    ) -> NamedArrays:
        """Global weights plus the trimmed-mean delta."""
        if not updates:
            raise ValueError("no updates to aggregate")
        return add(global_weights, trimmed_mean([u.delta for u in updates], trim=self.trim))
