"""The Strategy protocol every aggregation algorithm implements."""

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from fedflow.params import NamedArrays
from fedflow.update import DecodedUpdate

TrainSettings = dict[str, float | int | str | bool]

# Extra tensors travel in the same safetensors payload as the weights, named "<extra>::<param>".
EXTRA_SEPARATOR = "::"


def check_weighting(weighting: str) -> None:
    """Refuse an unknown weighting when the strategy is built (at config parsing)."""
    if weighting not in ("examples", "uniform"):
        raise ValueError(f"weighting must be 'examples' or 'uniform', got {weighting!r}")


class PlainServer:
    """Defaults for strategies without server state that ask nothing special of the sites."""

    averaging = True
    site_extras: tuple[str, ...] = ()

    def setup(self, global_weights: Mapping[str, np.ndarray], *, num_sites: int) -> None:
        """No server state to prepare."""

    def configure_train(self, round_number: int) -> TrainSettings:
        """Plain local training."""
        return {}

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

    def setup(self, global_weights: Mapping[str, np.ndarray], *, num_sites: int) -> None:
        """Prepare server state for this model and number of eligible sites (before round 1)."""
        ...

    def configure_train(self, round_number: int) -> TrainSettings:
        """Scalar settings sent to every site for this round's local step."""
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
