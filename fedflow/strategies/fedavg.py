"""FedAvg: McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data", AISTATS 2017 (arXiv:1602.05629).

The new global model is the old one plus the example-weighted mean of the sites' deltas.
"""

from collections.abc import Mapping, Sequence

import numpy as np

from fedflow.aggregate import weighted_mean
from fedflow.params import NamedArrays, add
from fedflow.strategies.base import TrainSettings
from fedflow.update import DecodedUpdate


class FedAvg:
    """Federated averaging, weighted by example count (or uniformly)."""

    name = "fedavg"

    def __init__(self, *, weighting: str = "examples") -> None:
        self.weighting = weighting

    def configure_train(self, round_number: int) -> TrainSettings:
        """FedAvg asks nothing special of the sites."""
        return {}

    def aggregate(
        self,
        round_number: int,
        global_weights: Mapping[str, np.ndarray],
        updates: Sequence[DecodedUpdate],
    ) -> NamedArrays:
        """Global weights plus the weighted mean delta."""
        if not updates:
            raise ValueError(f"round {round_number}: no updates to aggregate")
        if self.weighting not in ("examples", "uniform"):
            raise ValueError(f"fedavg weighting must be 'examples' or 'uniform', got {self.weighting!r}")
        if self.weighting == "uniform":
            weights = [1.0] * len(updates)
        else:
            weights = [float(update.num_examples) for update in updates]
        mean_delta = weighted_mean([update.delta for update in updates], weights)
        return add(global_weights, mean_delta)

    def state(self) -> NamedArrays:
        """Stateless."""
        return {}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Stateless: nothing to restore."""
