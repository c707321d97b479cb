"""Everything a federation needs to continue after a completed round, saved and restored as one."""

from dataclasses import dataclass
from pathlib import Path

from fedflow.checkpoint import RoundCheckpoint, load_checkpoint, save_checkpoint
from fedflow.params import NamedArrays


@dataclass(frozen=True)
class FederationState:
    """The checkpoint of a round: its record (config, sites, preprocessing, privacy spent, site
    progress, metrics) and its tensors (global weights, the strategy's server state)."""

    checkpoint: RoundCheckpoint
    weights: NamedArrays
    strategy_state: NamedArrays

    @property
    def round(self) -> int:
        """The last completed round."""
        return self.checkpoint.round

    @classmethod
    def load(cls, federation_id: str) -> "FederationState":
        """The federation's last checkpoint (CheckpointError when missing or unreadable)."""
        checkpoint, weights, strategy_state = load_checkpoint(federation_id)
        return cls(checkpoint=checkpoint, weights=weights, strategy_state=strategy_state)

    def save(self) -> Path:
        """Persist atomically (the state file names the round last)."""
        return save_checkpoint(self.checkpoint, self.weights, self.strategy_state)
