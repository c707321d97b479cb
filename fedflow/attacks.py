"""Simulated hostile sites, for robustness experiments only (simulation mode, never by default).

Model poisoning replaces what a site sends: `gaussian` (random noise of sd `scale`),
`sign_flip` (-scale times the honest delta) and `scaled` (scale times the honest delta).
Data poisoning trains on wrong labels: `label_flip`. `dropout` is a failure, not an attack: the
site crashes in its training step (after secure aggregation's key sharing), every round.
"""

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fedflow.capabilities import FLIPS_LABELS, Declaration
from fedflow.params import NamedArrays

AttackKind = Literal["gaussian", "sign_flip", "scaled", "label_flip", "dropout"]

# What each kind does, for fedflow.compatibility (a task without labels cannot have them flipped).
ATTACKS: dict[str, Declaration] = {
    "gaussian": Declaration(),
    "sign_flip": Declaration(),
    "scaled": Declaration(),
    "label_flip": Declaration(capabilities=frozenset({FLIPS_LABELS})),
    "dropout": Declaration(),
}


class AttackConfig(BaseModel):
    """Which sites misbehave and how."""

    model_config = ConfigDict(extra="forbid")

    kind: AttackKind
    sites: list[str] = Field(description="The hostile sites, by name.")
    scale: float = Field(default=1.0, gt=0, description="Noise sd, or the factor of sign_flip / scaled.")


def poison_delta(delta: NamedArrays, *, kind: AttackKind, scale: float, seed: int) -> NamedArrays:
    """What a model-poisoning site sends instead of its honest delta."""
    if kind == "gaussian":
        rng = np.random.default_rng(seed)
        return {k: rng.normal(0.0, scale, size=delta[k].shape).astype(delta[k].dtype) for k in sorted(delta)}
    if kind == "sign_flip":
        return {k: (-scale * v).astype(v.dtype) for k, v in delta.items()}
    if kind == "scaled":
        return {k: (scale * v).astype(v.dtype) for k, v in delta.items()}
    return dict(delta)


class SimulatedDropout(RuntimeError):
    """Raised by a site configured to drop out (simulation only)."""


def flip_labels(labels: np.ndarray, *, num_classes: int) -> np.ndarray:
    """Binary 0/1 labels swapped; class indices moved to the next class."""
    if np.issubdtype(labels.dtype, np.integer):
        return ((labels + 1) % num_classes).astype(labels.dtype)
    return (1.0 - labels).astype(labels.dtype)
