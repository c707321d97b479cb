"""A recorder that keeps records in memory and checkpoints each round: the engine without MLflow."""

from fedflow.federation.plan import FederationOutcome
from fedflow.federation.recorder import Note, PreparationRecord, PreprocessingRecord, RoundRecord


class MemoryRecorder:
    """For tests and benchmarks: everything in lists; each round's state saved as a checkpoint."""

    def __init__(self, *, checkpoints: bool = True) -> None:
        self.checkpoints = checkpoints
        self.preparation: PreparationRecord | None = None
        self.preprocessing: PreprocessingRecord | None = None
        self.notes: list[Note] = []
        self.rounds: list[RoundRecord] = []
        self.audit: dict[str, dict[str, float]] = {}
        self.outcome: FederationOutcome | None = None

    def sites_prepared(self, record: PreparationRecord) -> None:
        """Keep it."""
        self.preparation = record

    def preprocessing_agreed(self, record: PreprocessingRecord) -> None:
        """Keep it."""
        self.preprocessing = record

    def note(self, note: Note) -> None:
        """Keep it."""
        self.notes.append(note)

    def round_completed(self, record: RoundRecord) -> None:
        """Keep it and save the round's checkpoint."""
        self.rounds.append(record)
        if self.checkpoints:
            record.state.save()

    def flush(self) -> None:
        """Nothing pending."""

    def audit_completed(self, scores: dict[str, dict[str, float]], step: int) -> None:
        """Keep them."""
        self.audit = scores

    def finished(self, outcome: FederationOutcome) -> None:
        """Keep it."""
        self.outcome = outcome
