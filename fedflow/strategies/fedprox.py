"""FedProx: Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020
(arXiv:1812.06127).

Each site minimises its loss plus (mu / 2) * ||w - w_global||^2, which keeps local models near
the global one when sites differ; the server averages as FedAvg does.
"""

from fedflow.strategies.base import TrainSettings
from fedflow.strategies.fedavg import FedAvg


class FedProx(FedAvg):
    """FedAvg on the server; a proximal term of strength `mu` in every site's local loop."""

    name = "fedprox"

    def __init__(self, *, mu: float = 0.01, weighting: str = "examples") -> None:
        super().__init__(weighting=weighting)
        self.mu = mu

    def configure_train(self, round_number: int) -> TrainSettings:
        """Ask the sites to add the proximal term."""
        return {"proximal_mu": float(self.mu)}
