"""What a coordinator persists after every round so that a killed run can continue exactly.

A checkpoint folder holds `state.json` (round, run ids, config, eligible sites, preprocessing,
class weights, champion, metric history), `noise.key` (the coordinator's secret DP noise key,
readable by its owner only: it never goes to MLflow, a message or a log) and, per round r,
`global-r.safetensors` (the global weights) and `strategy-r.safetensors` (the server state).
The noise key is written first, then the round's tensor files, and `state.json` (which names the round)
last, each through a temporary name and a rename: a kill at any point leaves a state.json that names one
complete, consistent round.
"""

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from fedflow.errors import FedflowError
from fedflow.params import NamedArrays, decode, encode
from fedflow.tabular import Preprocessor

STATE_FILE = "state.json"
NOISE_KEY_FILE = "noise.key"
_KEEP_ROUNDS = 2  # tensor files of older rounds are removed


def _weights_file(round_number: int) -> str:
    return f"global-{round_number}.safetensors"


def _strategy_file(round_number: int) -> str:
    return f"strategy-{round_number}.safetensors"


class CheckpointError(FedflowError):
    """A checkpoint is missing, incomplete or does not match the run asked for."""


class RoundCheckpoint(BaseModel):
    """The coordinator's state after a completed round (no site data, no paths of sites)."""

    federation_id: str
    domain: str
    round: int = Field(description="The last completed round.")
    mlflow_run_id: str
    config: dict[str, Any] = Field(description="The resolved FederationConfig.")
    sites_file: str | None = None
    eligible: list[str]
    excluded: dict[str, list[str]] = Field(default_factory=dict)
    preprocessor: Preprocessor
    class_weights: list[float] | None = None
    champion: tuple[str, float] | None = None
    last_accepted: dict[str, int] = Field(
        default_factory=dict, description="The last round each site's update was accepted."
    )
    privacy_history: list[tuple[float, float]] = Field(
        default_factory=list, description="(noise multiplier, sampling rate) of every private round."
    )
    history: list[dict[str, float]] = Field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when every configured round has run."""
        return self.round >= int(self.config["rounds"])


def state_root() -> Path:
    """Where coordinators keep checkpoints: `FEDFLOW_STATE_DIR` or `./.fedflow`."""
    return Path(os.environ.get("FEDFLOW_STATE_DIR") or Path.cwd() / ".fedflow").resolve()


def checkpoint_dir(federation_id: str) -> Path:
    """The checkpoint folder of one federation."""
    return state_root() / "runs" / federation_id


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def save_checkpoint(checkpoint: RoundCheckpoint, weights: NamedArrays, strategy_state: NamedArrays) -> Path:
    """Persist a round; the state file is written last so it only ever names complete files."""
    folder = checkpoint_dir(checkpoint.federation_id)
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(folder / _weights_file(checkpoint.round), encode(weights))
    _write_atomic(folder / _strategy_file(checkpoint.round), encode(strategy_state))
    _write_atomic(folder / STATE_FILE, checkpoint.model_dump_json(indent=1).encode())
    stale = checkpoint.round - _KEEP_ROUNDS
    for name in (_weights_file(stale), _strategy_file(stale)):
        (folder / name).unlink(missing_ok=True)
    return folder


def save_noise_key(federation_id: str, key: bytes) -> None:
    """Keep the coordinator's noise key beside the checkpoint, readable by its owner only."""
    folder = checkpoint_dir(federation_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / NOISE_KEY_FILE
    if path.is_file() and path.read_bytes() == key:
        return
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
        handle.write(key)
    os.replace(temporary, path)


def load_noise_key(federation_id: str) -> bytes | None:
    """The coordinator's noise key of a federation, or None (a checkpoint from before secret noise)."""
    path = checkpoint_dir(federation_id) / NOISE_KEY_FILE
    return path.read_bytes() if path.is_file() else None


def load_checkpoint(federation_id: str) -> tuple[RoundCheckpoint, NamedArrays, NamedArrays]:
    """Read a federation's last checkpoint: state, global weights and strategy state."""
    folder = checkpoint_dir(federation_id)
    if not (folder / STATE_FILE).is_file():
        raise CheckpointError(f"no checkpoint for federation {federation_id!r} in {folder}")
    try:
        checkpoint = RoundCheckpoint.model_validate_json((folder / STATE_FILE).read_text())
        weights = decode((folder / _weights_file(checkpoint.round)).read_bytes())
        strategy_state = decode((folder / _strategy_file(checkpoint.round)).read_bytes())
    except (OSError, ValueError, FedflowError) as error:
        raise CheckpointError(
            f"checkpoint of {federation_id!r} in {folder} is unreadable: {error}"
        ) from error
    return checkpoint, weights, strategy_state


def find_checkpoint(identifier: str) -> str:
    """The federation id for a federation id or an MLflow run id."""
    if (checkpoint_dir(identifier) / STATE_FILE).is_file():
        return identifier
    runs = state_root() / "runs"
    for state in sorted(runs.glob(f"*/{STATE_FILE}")) if runs.is_dir() else []:
        try:
            checkpoint = RoundCheckpoint.model_validate_json(state.read_text())
        except ValueError:
            continue
        if checkpoint.mlflow_run_id == identifier:
            return checkpoint.federation_id
    raise CheckpointError(f"no checkpoint for {identifier!r} (a federation id or MLflow run id) under {runs}")
