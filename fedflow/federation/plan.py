"""What a federation run is asked to do, and what it returns."""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from fedflow.config import FederationConfig
from fedflow.domain import DomainSpec
from fedflow.federation.state import FederationState
from fedflow.tabular import Preprocessor


@dataclass(frozen=True)
class DomainModel:
    """The parts of a domain template the coordinator uses: its typed config and model factory."""

    name: str
    spec: DomainSpec
    build_model: Callable[..., torch.nn.Module]
    model_sha256: str | None = None  # of its model.py: sites train only models they approved


@dataclass(frozen=True)
class StartingPoint:
    """An earlier model to continue from (the domain's champion) instead of a seeded one."""

    label: str  # how errors name it, e.g. "champion version 3"
    weights_payload: bytes
    preprocessor: Preprocessor  # its weights only fit the features this preprocessing produces
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FederationPlan:
    """One federation: which domain and sites, with which config, from where."""

    federation_id: str
    domain: DomainModel
    config: FederationConfig
    sites: list[str]
    tracking_run_id: str = ""  # the recorder's run, kept in checkpoints to resume into it
    sites_file: str | None = None  # simulation: where sites' files are listed (kept for resume)
    start_from: StartingPoint | None = None
    resume: FederationState | None = None
    # Tags of models this run continues ({what: tags}), to check the base model they were tuned on.
    earlier_models: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class FederationOutcome:
    """What a finished federation reports."""

    rounds_completed: int
    champion_metric: str
    eligible: list[str]
    excluded: dict[str, list[str]]
    final_metrics: dict[str, float]
    per_site: dict[str, dict[str, float]]
    history: list[dict[str, float]]
    epsilon: float | None = None
    audit: dict[str, dict[str, float]] = field(default_factory=dict)
