"""Where a federation's progress goes (tracking, checkpoints, progress): the recorder Protocol."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from fedflow.federation.plan import FederationOutcome
from fedflow.federation.state import FederationState
from fedflow.rounds import RoundMetrics
from fedflow.tabular import Preprocessor
from fedflow.validation_summary import ValidationSummary


@dataclass(frozen=True)
class PreparationRecord:
    """Which sites passed validation, and every site's summary (counts, never values)."""

    summaries: list[ValidationSummary]
    eligible: list[str]
    excluded: dict[str, list[str]]


@dataclass(frozen=True)
class PreprocessingRecord:
    """The shared preprocessing agreed from the sites' aggregates, and each site's row counts."""

    preprocessor: Preprocessor
    sites: list[dict[str, str | int | float]]  # per site: training rows and label shares


@dataclass(frozen=True)
class RoundRecord:
    """A completed round: its state (to checkpoint), new global model, metrics and who took part."""

    state: FederationState
    weights_payload: bytes
    metrics: RoundMetrics
    logged: dict[str, float]  # the round's flat metrics (global, per site, bytes, privacy, time)
    participants: list[str]
    dropped: dict[str, str]
    champion_metric: str
    higher_is_better: bool
    epsilon: float | None = None
    champion_candidate: bool = True  # False: some site of the population did not evaluate this round


@dataclass(frozen=True)
class Note:
    """Tags and step metrics outside the rounds (exclusions, base model identity, a budget stop)."""

    tags: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    step: int = 0


class Recorder(Protocol):
    """Receives the federation's records in order. `round_completed` may work in the background
    (the sites go on training) but must persist each round's state after its other records."""

    def sites_prepared(self, record: PreparationRecord) -> None:
        """After validation, before the run can stop for too few sites."""
        ...

    def preprocessing_agreed(self, record: PreprocessingRecord) -> None:
        """Once, when the shared preprocessing is fitted (not again on resume)."""
        ...

    def note(self, note: Note) -> None:
        """Tags and metrics outside the rounds."""
        ...

    def round_completed(self, record: RoundRecord) -> None:
        """Record the round and persist its state."""
        ...

    def flush(self) -> None:
        """Return once everything recorded so far is persisted (raise what failed)."""
        ...

    def audit_completed(self, scores: dict[str, dict[str, float]], step: int) -> None:
        """The membership-inference audit's scores per site."""
        ...

    def finished(self, outcome: FederationOutcome) -> None:
        """The run ended normally."""
        ...
