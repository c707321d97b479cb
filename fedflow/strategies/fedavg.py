"""FedAvg: McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data", AISTATS 2017 (arXiv:1602.05629).

The new global model is the old one plus the (example-weighted) mean of the sites' deltas.
"""

from collections.abc import Mapping, Sequence

import numpy as np

from fedflow.aggregate import mean_delta
from fedflow.params import NamedArrays, add
from fedflow.strategies.base import PlainServer, check_weighting
from fedflow.update import DecodedUpdate


class FedAvg(PlainServer):
    """Federated averaging, weighted by example count (or uniformly)."""

    name = "fedavg"

    def __init__(self, *, weighting: str = "examples") -> None:
        check_weighting(weighting)
        self.weighting = weighting

    def aggregate(
        self, round_number: int, global_weights: Mapping[str, np.ndarray], updates: Sequence[DecodedUpdate]
    ) -> NamedArrays:
        """Global weights plus the weighted mean delta."""
        return add(global_weights, mean_delta(updates, weighting=self.weighting))
