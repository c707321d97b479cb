"""Everything a federation needs to continue after a completed round, saved and restored as one."""

from dataclasses import dataclass, field
from pathlib import Path

from fedflow.checkpoint import (
    RoundCheckpoint,
    load_checkpoint,
    load_noise_key,
    save_checkpoint,
    save_noise_key,
)
from fedflow.params import NamedArrays


@dataclass(frozen=True)
class FederationState:
    """The checkpoint of a round: its record (config, sites, preprocessing, privacy spent, site
    progress, metrics), its tensors (global weights, the strategy's server state) and the
    coordinator's secret noise key (kept in its own file; empty: none saved yet)."""

    checkpoint: RoundCheckpoint
    weights: NamedArrays
    strategy_state: NamedArrays
    noise_key: bytes = field(default=b"", repr=False)

    @property
    def round(self) -> int:
        """The last completed round."""
        return self.checkpoint.round

    @classmethod
    def load(cls, federation_id: str) -> "FederationState":
        """The federation's last checkpoint (CheckpointError when missing or unreadable)."""
        checkpoint, weights, strategy_state = load_checkpoint(federation_id)
        noise_key = load_noise_key(federation_id) or b""
        return cls(checkpoint=checkpoint, weights=weights, strategy_state=strategy_state, noise_key=noise_key)

    def save(self) -> Path:
        """Persist atomically (the noise key first, the state file, which names the round, last)."""
        if self.noise_key:
            save_noise_key(self.checkpoint.federation_id, self.noise_key)
        return save_checkpoint(self.checkpoint, self.weights, self.strategy_state)
