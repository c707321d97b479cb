"""FedAvgM: Hsu, Qi & Brown, "Measuring the Effects of Non-Identical Data Distribution for
Federated Visual Classification", 2019 (arXiv:1909.06335).

Server momentum on the mean delta: v <- beta * v + delta; w <- w + server_lr * v.
"""

from collections.abc import Mapping, Sequence

import numpy as np

from fedflow.aggregate import mean_delta
from fedflow.capabilities import Refusal
from fedflow.params import NamedArrays
from fedflow.strategies.base import ClientHook, NoClientHook, check_weighting
from fedflow.update import DecodedUpdate


class FedAvgM:
    """FedAvg with a momentum buffer on the server."""

    name = "fedavgm"
    averaging = True  # from a zero buffer, the first step is exactly the mean delta
    site_extras: tuple[str, ...] = ()
    capabilities: frozenset[str] = frozenset()
    refuses: tuple[Refusal, ...] = ()

    def __init__(self, *, server_lr: float = 1.0, momentum: float = 0.9, weighting: str = "examples") -> None:
        self.server_lr = server_lr
        self.momentum = momentum
        check_weighting(weighting)
        self.weighting = weighting
        self.velocity: NamedArrays = {}

    def setup(self, global_weights: Mapping[str, np.ndarray], *, num_sites: int) -> None:
        """Start from a zero momentum buffer."""
        if not self.velocity:
            self.velocity = {k: np.zeros_like(v, dtype=np.float32) for k, v in global_weights.items()}

    def client_hook(self) -> ClientHook:
        """Plain local training."""
        return NoClientHook()

    def broadcast(self) -> NamedArrays:
        """Nothing besides the weights."""
        return {}

    def aggregate(
        self, round_number: int, global_weights: Mapping[str, np.ndarray], updates: Sequence[DecodedUpdate]
    ) -> NamedArrays:
        """Momentum step along the mean delta."""
        self.setup(global_weights, num_sites=len(updates))
        delta = mean_delta(updates, weighting=self.weighting)
        out: NamedArrays = {}
        for name, weight in global_weights.items():
            self.velocity[name] = (self.momentum * self.velocity[name] + delta[name]).astype(np.float32)
            out[name] = (weight + self.server_lr * self.velocity[name]).astype(weight.dtype)
        return out

    def state(self) -> NamedArrays:
        """The momentum buffer."""
        return {f"velocity::{k}": v for k, v in self.velocity.items()}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore the momentum buffer."""
        self.velocity = {
            k.split("::", 1)[1]: np.asarray(v) for k, v in state.items() if k.startswith("velocity::")
        }
