"""FedAvg: McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data", AISTATS 2017 (arXiv:1602.05629).

The new global model is the old one plus the (example-weighted) mean of the sites' deltas.
"""

from collections.abc import Mapping, Sequence

import numpy as np

from fedflow.aggregate import mean_delta
from fedflow.params import NamedArrays, add
from fedflow.strategies.base import TrainSettings, check_weighting
from fedflow.update import DecodedUpdate


class FedAvg:
    """Federated averaging, weighted by example count (or uniformly)."""

    name = "fedavg"
    averaging = True
    site_extras: tuple[str, ...] = ()

    def __init__(self, *, weighting: str = "examples") -> None:
        check_weighting(weighting)
        self.weighting = weighting

    def setup(self, global_weights: Mapping[str, np.ndarray], *, num_sites: int) -> None:
        """Stateless."""

    def configure_train(self, round_number: int) -> TrainSettings:
        """FedAvg asks nothing special of the sites."""
        return {}

    def broadcast(self) -> NamedArrays:
        """Nothing besides the weights."""
        return {}

    def aggregate(
        self, round_number: int, global_weights: Mapping[str, np.ndarray], updates: Sequence[DecodedUpdate]
    ) -> NamedArrays:
        """Global weights plus the weighted mean delta."""
        return add(global_weights, mean_delta(updates, weighting=self.weighting))

    def state(self) -> NamedArrays:
        """Stateless."""
        return {}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Stateless: nothing to restore."""
