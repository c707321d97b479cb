"""FedProx: Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020
(arXiv:1812.06127).

Each site minimises its loss plus (mu / 2) * ||w - w_global||^2, which keeps local models near
the global one when sites differ; the server averages as FedAvg does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from fedflow.params import NamedArrays
from fedflow.strategies.base import ClientHook, GradientAdjustment, HookOutcome, LocalRound
from fedflow.strategies.fedavg import FedAvg

if TYPE_CHECKING:
    import torch


class ProximalTerm:
    """Adds mu * (w - w_start), the gradient of (mu / 2) * ||w - w_start||^2, to every gradient."""

    def __init__(self, *, mu: float) -> None:

        self.mu = mu
        self.anchor: dict[str, torch.Tensor] = {}

    def begin(self, parameters: Mapping[str, torch.nn.Parameter]) -> None:
        """Remember where training starts: the global weights."""
        self.anchor = {name: p.detach().clone() for name, p in parameters.items()}

    def adjust(self, name: str, parameter: torch.nn.Parameter) -> None:
        """Pull the step back towards the global weights."""
        assert parameter.grad is not None
        parameter.grad += self.mu * (parameter - self.anchor[name])


class ProximalHook:
    """FedProx at a site: the proximal term in its loop; it sends and keeps nothing extra."""

    changes_gradients = True

    def __init__(self, *, mu: float) -> None:
        self.mu = mu

    def gradient_adjustment(self, local: LocalRound) -> GradientAdjustment | None:
        """The proximal term (none when mu is 0: plain FedAvg training)."""
        return ProximalTerm(mu=self.mu) if self.mu > 0 else None

    def after_training(self, local: LocalRound, end: NamedArrays, steps: int) -> HookOutcome:
        """Nothing to send or keep."""
        return HookOutcome()


class FedProx(FedAvg):
    """FedAvg on the server; a proximal term of strength `mu` in every site's local loop."""

    name = "fedprox"

    def __init__(self, *, mu: float = 0.01, weighting: str = "examples") -> None:
        super().__init__(weighting=weighting)
        self.mu = mu

    def client_hook(self) -> ClientHook:
        """Ask the sites to add the proximal term."""
        return ProximalHook(mu=float(self.mu))
