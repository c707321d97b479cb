"""A site's own record of what it answered in each federation, kept on its disk.

The record is what lets a site keep its policy across calls and restarts: how many requests it
answered, the last round it trained (and a digest of that request, so that a coordinator that
crashed may repeat exactly that round, and nothing earlier), and the privacy its rows have spent.
"""

import hashlib
import os
from pathlib import Path

from pydantic import BaseModel, Field

from fedflow.messages import Message
from fedflow.privacy.accountant import PrivacyAccountant
from fedflow.site_state import site_folder

LEDGER_FILE = "ledger.json"


class PrivacySpent(BaseModel):
    """Steps of a Gaussian mechanism the site ran on its rows: noise multiplier and sampling rate."""

    noise_multiplier: float
    sample_rate: float
    steps: int = 1


class SiteLedger(BaseModel):
    """What a site answered in one federation."""

    calls: int = 0
    last_round: int = 0
    last_train: str = Field(default="", description="SHA-256 of the last train request answered.")
    privacy: list[PrivacySpent] = Field(default_factory=list)

    def epsilon(self, delta: float, extra: PrivacySpent | None = None) -> float:
        """The ε the site's rows have spent (with `extra`: after one more step)."""
        entries = [*self.privacy, *([extra] if extra is not None else [])]
        history = [(e.noise_multiplier, e.sample_rate) for e in entries for _ in range(e.steps)]
        return PrivacyAccountant(delta=delta, history=history).epsilon


def request_digest(request: Message) -> str:
    """SHA-256 of a request's canonical JSON."""
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


def load_ledger(root: Path, federation_id: str, site: str) -> SiteLedger:
    """The site's record of a federation (empty when it never answered one of its requests)."""
    path = site_folder(root, federation_id, site) / LEDGER_FILE
    return SiteLedger.model_validate_json(path.read_text()) if path.is_file() else SiteLedger()


def save_ledger(root: Path, federation_id: str, site: str, ledger: SiteLedger) -> None:
    """Write the record atomically (temporary file, then rename)."""
    folder = site_folder(root, federation_id, site)
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / (LEDGER_FILE + ".tmp")
    temporary.write_text(ledger.model_dump_json())
    os.replace(temporary, folder / LEDGER_FILE)
