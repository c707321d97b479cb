"""A site's private algorithm state (e.g. SCAFFOLD's control), kept on the site's own disk.

State is saved per round, and a round reads the latest state from an earlier round: if the
coordinator is killed mid-round and the round is run again, the site starts from the same
state as the first time, so a resumed run ends with the same model as an uninterrupted one.
"""

import os
import re
from pathlib import Path

from fedflow.params import NamedArrays, decode, encode

_ROUND_FILE = re.compile(r"^round-(\d+)\.safetensors$")


def _folder(root: Path, federation_id: str, site: str) -> Path:
    return root / "sites" / federation_id / site


def save_site_state(root: Path, federation_id: str, site: str, round_number: int, state: NamedArrays) -> Path:
    """Write the state after `round_number`, atomically (temporary file, then rename)."""
    folder = _folder(root, federation_id, site)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"round-{round_number}.safetensors"
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(encode(state))
    os.replace(temporary, path)
    return path


def load_site_state(root: Path, federation_id: str, site: str, *, before_round: int) -> NamedArrays | None:
    """The latest state saved after a round earlier than `before_round`, or None."""
    folder = _folder(root, federation_id, site)
    if not folder.is_dir():
        return None
    rounds = [
        int(match.group(1)) for p in folder.iterdir() if (match := _ROUND_FILE.match(p.name)) is not None
    ]
    earlier = [r for r in rounds if r < before_round]
    if not earlier:
        return None
    return decode((folder / f"round-{max(earlier)}.safetensors").read_bytes())
