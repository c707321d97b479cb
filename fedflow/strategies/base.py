"""The Strategy protocol every aggregation algorithm implements, and the client hook through
which a strategy changes what its sites do (FedProx's proximal term, SCAFFOLD's controls)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from fedflow.capabilities import Refusal
from fedflow.params import NamedArrays
from fedflow.update import DecodedUpdate

if TYPE_CHECKING:
    import torch

# Extra tensors travel in the same safetensors payload as the weights, named "<extra>::<param>".
EXTRA_SEPARATOR = "::"


def split_payload(arrays: NamedArrays) -> tuple[NamedArrays, dict[str, NamedArrays]]:
    """Separate model weights from extra tensor sets named `<extra>::<param>`."""
    weights: NamedArrays = {}
    extras: dict[str, NamedArrays] = {}
    for key, value in arrays.items():
        if EXTRA_SEPARATOR in key:
            extra, name = key.split(EXTRA_SEPARATOR, 1)
            extras.setdefault(extra, {})[name] = value
        else:
            weights[key] = value
    return weights, extras


def join_payload(weights: NamedArrays, extras: dict[str, NamedArrays]) -> NamedArrays:
    """The inverse of `split_payload`."""
    joined = dict(weights)
    for extra, arrays in extras.items():
        joined.update({f"{extra}{EXTRA_SEPARATOR}{name}": value for name, value in arrays.items()})
    return joined


def check_weighting(weighting: str) -> None:
    """Refuse an unknown weighting when the strategy is built (at config parsing)."""
    if weighting not in ("examples", "uniform"):
        raise ValueError(f"weighting must be 'examples' or 'uniform', got {weighting!r}")


class GradientAdjustment(Protocol):
    """What a strategy adds to every local gradient before the optimiser steps."""

    def begin(self, parameters: Mapping[str, torch.nn.Parameter]) -> None:
        """Called once before the first step, with the parameters local training updates."""
        ...

    def adjust(self, name: str, parameter: torch.nn.Parameter) -> None:
        """Change `parameter.grad` in place (no autograd: called under `torch.no_grad`)."""
        ...


@dataclass(frozen=True)
class LocalRound:
    """What a client hook sees of a site's local step."""

    start: NamedArrays  # the global weights the site starts from
    broadcast: dict[str, NamedArrays]  # the strategy's extra tensor sets sent with the weights
    state: NamedArrays  # the site's private state, from its last accepted round
    learning_rate: float
    momentum: float


@dataclass(frozen=True)
class HookOutcome:
    """What a client hook adds after training: tensor sets sent with the delta, state kept at the site."""

    extras: dict[str, NamedArrays] = field(default_factory=dict)
    state: NamedArrays = field(default_factory=dict)


class ClientHook(Protocol):
    """A strategy's site-side behaviour, run inside the site's training step."""

    # True when the hook changes gradients (refused with DP-SGD, whose noise must come last).
    changes_gradients: bool

    def gradient_adjustment(self, local: LocalRound) -> GradientAdjustment | None:
        """What to add to the gradients this round (None: plain training)."""
        ...

    def after_training(self, local: LocalRound, end: NamedArrays, steps: int) -> HookOutcome:
        """Extras to send and state to keep, from the weights after `steps` local steps."""
        ...


class NoClientHook:
    """Plain local training: the site sends its delta and keeps nothing."""

    changes_gradients = False

    def gradient_adjustment(self, local: LocalRound) -> GradientAdjustment | None:
        """Nothing to add."""
        return None

    def after_training(self, local: LocalRound, end: NamedArrays, steps: int) -> HookOutcome:
        """Nothing to send or keep."""
        return HookOutcome()


class PlainServer:
    """Defaults for strategies without server state that ask nothing special of the sites."""

    averaging = True
    site_extras: tuple[str, ...] = ()
    capabilities: frozenset[str] = frozenset()
    refuses: tuple[Refusal, ...] = ()

    def client_hook(self) -> ClientHook:
        """Plain local training."""
        return NoClientHook()

    def setup(self, global_weights: Mapping[str, np.ndarray], *, num_sites: int) -> None:
        """No server state to prepare."""

    def broadcast(self) -> NamedArrays:
        """Nothing besides the weights."""
        return {}

    def state(self) -> NamedArrays:
        """Stateless."""
        return {}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Stateless: nothing to restore."""


@runtime_checkable
class Strategy(Protocol):
    """Turns the global model and the sites' decoded updates into the next global model."""

    name: str
    # True when identical site deltas move the global model by exactly that delta.
    averaging: bool
    # Names of the extra tensor sets a site sends with its delta (each shaped like the weights).
    site_extras: tuple[str, ...]
    # What it provides and cannot follow (fedflow.capabilities). Sending site extras and changing
    # gradients are not declared here: fedflow.compatibility reads them from `site_extras` and
    # `client_hook().changes_gradients`, their one source of truth.
    capabilities: frozenset[str]
    refuses: tuple[Refusal, ...]

    def setup(self, global_weights: Mapping[str, np.ndarray], *, num_sites: int) -> None:
        """Prepare server state for this model and number of eligible sites (before round 1)."""
        ...

    def client_hook(self) -> ClientHook:
        """The strategy's behaviour at a site (the same object at every site and round)."""
        ...

    def broadcast(self) -> NamedArrays:
        """Extra tensors sent to the sites with the global weights (named `<extra>::<param>`)."""
        ...

    def aggregate(
        self, round_number: int, global_weights: Mapping[str, np.ndarray], updates: Sequence[DecodedUpdate]
    ) -> NamedArrays:
        """Return the new global weights from the current ones and this round's updates."""
        ...

    def state(self) -> NamedArrays:
        """Server-side state to persist between rounds (empty when stateless)."""
        ...

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what `state()` returned."""
        ...
