"""FedAdam, FedYogi and FedAdagrad: Reddi et al., "Adaptive Federated Optimization",
ICLR 2021 (arXiv:2003.00295).

The mean site delta is a pseudo-gradient for a server optimiser:
m <- b1 m + (1 - b1) d;  v <- (Adam) b2 v + (1 - b2) d^2 | (Yogi) v - (1 - b2) d^2 sign(v - d^2)
| (Adagrad) v + d^2;  w <- w + server_lr * m / (sqrt(v) + tau). As in the paper, v starts at
tau^2 and there is no bias correction.
"""

from collections.abc import Mapping, Sequence

import numpy as np

from fedflow.aggregate import mean_delta
from fedflow.capabilities import Refusal
from fedflow.params import NamedArrays
from fedflow.strategies.base import ClientHook, NoClientHook, check_weighting
from fedflow.update import DecodedUpdate

VARIANTS = ("adam", "yogi", "adagrad")


def second_moment(variant: str, v: np.ndarray, d: np.ndarray, beta2: float) -> np.ndarray:
    """The variant's update of the second-moment estimate (pure, for tests by hand)."""
    squared = d * d
    if variant == "adam":
        return np.asarray(beta2 * v + (1 - beta2) * squared, dtype=np.float64)
    if variant == "yogi":
        return np.asarray(v - (1 - beta2) * squared * np.sign(v - squared), dtype=np.float64)
    if variant == "adagrad":
        return np.asarray(v + squared, dtype=np.float64)
    raise ValueError(f"unknown FedOpt variant {variant!r}; choose one of {VARIANTS}")


class FedOpt:
    """A server-side adaptive optimiser on the pseudo-gradient; `variant` picks Adam/Yogi/Adagrad."""

    averaging = False
    site_extras: tuple[str, ...] = ()
    capabilities: frozenset[str] = frozenset()
    refuses: tuple[Refusal, ...] = ()

    def __init__(
        self,
        *,
        variant: str = "adam",
        server_lr: float = 0.05,
        beta1: float = 0.9,
        beta2: float = 0.99,
        tau: float = 1e-3,
        weighting: str = "examples",
    ) -> None:
        self.variant = variant
        self.name = f"fed{variant}"
        self.server_lr = server_lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.tau = tau
        check_weighting(weighting)
        self.weighting = weighting
        self.m: NamedArrays = {}
        self.v: NamedArrays = {}

    def setup(self, global_weights: Mapping[str, np.ndarray], *, num_sites: int) -> None:
        """Zero first moment, tau^2 second moment."""
        if not self.m:
            self.m = {k: np.zeros(w.shape, np.float64) for k, w in global_weights.items()}
            self.v = {k: np.full(w.shape, self.tau**2, np.float64) for k, w in global_weights.items()}

    def client_hook(self) -> ClientHook:
        """Plain local training."""
        return NoClientHook()

    def broadcast(self) -> NamedArrays:
        """Nothing besides the weights."""
        return {}

    def aggregate(
        self, round_number: int, global_weights: Mapping[str, np.ndarray], updates: Sequence[DecodedUpdate]
    ) -> NamedArrays:
        """One adaptive step along the mean delta."""
        self.setup(global_weights, num_sites=len(updates))
        delta = mean_delta(updates, weighting=self.weighting)
        out: NamedArrays = {}
        for name, weight in global_weights.items():
            d = delta[name].astype(np.float64)
            self.m[name] = self.beta1 * self.m[name] + (1 - self.beta1) * d
            self.v[name] = second_moment(self.variant, self.v[name], d, self.beta2)
            step = self.server_lr * self.m[name] / (np.sqrt(self.v[name]) + self.tau)
            out[name] = (weight + step).astype(weight.dtype)
        return out

    def state(self) -> NamedArrays:
        """Both moment estimates."""
        return {**{f"m::{k}": v for k, v in self.m.items()}, **{f"v::{k}": v for k, v in self.v.items()}}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore both moment estimates."""
        self.m = {k[3:]: np.asarray(v) for k, v in state.items() if k.startswith("m::")}
        self.v = {k[3:]: np.asarray(v) for k, v in state.items() if k.startswith("v::")}
