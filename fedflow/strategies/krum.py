"""Krum and Multi-Krum: Blanchard, El Mhamdi, Guerraoui & Stainer, "Machine Learning with
Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS 2017.

Each delta is scored by the summed squared distance to its n - f - 2 nearest neighbours; Krum
takes the best-scored delta, Multi-Krum averages the m best. Tolerates f hostile sites when
n > 2f + 2 (the score itself needs n > f + 2). Needs the individual updates (no secure aggregation).
"""

from collections.abc import Mapping, Sequence

import numpy as np

from fedflow.aggregate import krum_scores, weighted_mean
from fedflow.capabilities import READS_INDIVIDUAL_UPDATES
from fedflow.params import NamedArrays, add
from fedflow.strategies.base import PlainServer
from fedflow.update import DecodedUpdate


class MultiKrum(PlainServer):
    """Average of the `keep` deltas with the best Krum scores (`keep` = 1 is Krum)."""

    capabilities = frozenset({READS_INDIVIDUAL_UPDATES})

    def __init__(self, *, byzantine: int = 1, keep: int = 0) -> None:
        if byzantine < 0 or keep < 0:
            raise ValueError(f"byzantine and keep must be non-negative, got {byzantine} and {keep}")
        self.byzantine = byzantine
        self.keep = keep  # 0: n - f (Multi-Krum's usual choice)
        self.name = "krum" if keep == 1 else "multikrum"

    def selected(self, updates: Sequence[DecodedUpdate]) -> list[int]:
        """Indices of the updates Krum keeps, best first."""
        scores = krum_scores([u.delta for u in updates], byzantine=self.byzantine)
        keep = self.keep or len(updates) - self.byzantine
        return [int(i) for i in np.argsort(scores, kind="stable")[:keep]]

    def aggregate(
        self, round_number: int, global_weights: Mapping[str, np.ndarray], updates: Sequence[DecodedUpdate]
    ) -> NamedArrays:
        """Global weights plus the mean of the selected deltas."""
        chosen = self.selected(updates)
        return add(global_weights, weighted_mean([updates[i].delta for i in chosen], [1.0] * len(chosen)))
