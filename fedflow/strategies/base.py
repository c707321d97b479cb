"""The Strategy protocol every aggregation algorithm implements."""

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from fedflow.params import NamedArrays
from fedflow.update import DecodedUpdate

TrainSettings = dict[str, float | int | str | bool]


@runtime_checkable
class Strategy(Protocol):
    """Turns the global model and the sites' decoded updates into the next global model."""

    name: str

    def configure_train(self, round_number: int) -> TrainSettings:
        """Scalar settings sent to every site for this round's local step."""
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
