"""The step protocol of the update path, the work a step passes on, and the chain check."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from fedflow.errors import FedflowError
from fedflow.params import NamedArrays


class UpdatePathError(FedflowError):
    """The steps of an update path are in an order that would break one of them."""


@dataclass(frozen=True)
class SiteWork:
    """One local step in progress at a site: its inputs, and what the steps have made of them."""

    site: str
    round: int
    seed: int  # the federation's seed: each step derives its own from it
    features: np.ndarray
    labels: np.ndarray
    model: torch.nn.Module  # the global model, loaded; training changes it in place
    start: NamedArrays  # the global weights it started from
    broadcast: dict[str, NamedArrays]  # the strategy's extra tensor sets sent with the weights
    state: NamedArrays  # the site's private state this round continues from
    delta: NamedArrays = field(default_factory=dict)
    wire: NamedArrays | None = None  # a codec's arrays, sent instead of the dense delta
    extras: dict[str, NamedArrays] = field(default_factory=dict)  # sent beside the delta
    new_state: NamedArrays = field(default_factory=dict)  # private state to keep after this round
    num_examples: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    payload: bytes = b""


class UpdateStep(Protocol):
    """One step of the update path."""

    name: str
    provides: frozenset[str]  # what later steps may rely on ("delta", "clipped", "payload", ...)
    needs: frozenset[str]  # what an earlier step must have provided
    cannot_follow: frozenset[str]  # what must not have been provided yet

    def apply(self, work: SiteWork) -> SiteWork:
        """The work after this step."""
        ...


def check_update_path(steps: Sequence[UpdateStep]) -> None:
    """Refuse a chain in which a step lacks what it needs or comes after what it cannot follow."""
    provided: set[str] = set()
    for step in steps:
        missing = sorted(step.needs - provided)
        if missing:
            raise UpdatePathError(f"update step {step.name!r} needs {missing} from an earlier step")
        clash = sorted(step.cannot_follow & provided)
        if clash:
            raise UpdatePathError(f"update step {step.name!r} cannot follow a step that provides {clash}")
        provided |= step.provides


def run_update_path(steps: Sequence[UpdateStep], work: SiteWork) -> SiteWork:
    """Check the chain, then run its steps in order."""
    check_update_path(steps)
    for step in steps:
        work = step.apply(work)
    return work
