"""A site's private algorithm state (e.g. SCAFFOLD's control), kept on the site's own disk.

State is saved per round, and a round reads the latest state from an earlier round: if the
coordinator is killed mid-round and the round is run again, the site starts from the same
state as the first time, so a resumed run ends with the same model as an uninterrupted one.
"""

import os
import re
import uuid
from pathlib import Path

from fedflow.params import NamedArrays, decode, encode
from fedflow.privacy.noise_source import KEY_BYTES, new_noise_key

_ROUND_FILE = re.compile(r"^round-(\d+)\.safetensors$")

# DP-SGD's step count, and a codec's residual (what error feedback has not sent yet).
DP_SGD_STEPS = "dp_sgd_steps"
UPLINK_RESIDUAL = "uplink_residual"
# State that continues from the latest round trained, accepted or not: privacy was spent and the
# residual computed even when the coordinator dropped the update.
LATEST_STATE = (DP_SGD_STEPS, UPLINK_RESIDUAL)


def _folder(root: Path, federation_id: str, site: str) -> Path:
    # Both names can come from the coordinator (cross-silo): never let them leave the state folder.
    for kind, name in (("federation id", federation_id), ("site", site)):
        if not name or name.startswith(".") or any(c in name for c in "/\\\x00") or len(name) > 200:
            raise ValueError(f"{kind} {name!r} cannot name a folder: no path separators, no leading '.'")
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


def state_for_round(
    root: Path, federation_id: str, site: str, *, round_number: int, accepted_round: int
) -> NamedArrays:
    """The private state a round starts from.

    Algorithm state (SCAFFOLD's control) continues from the last round whose update was accepted
    (a dropped update must not move it); `LATEST_STATE` from the latest round before this one.
    """
    accepted = load_site_state(root, federation_id, site, before_round=accepted_round + 1) or {}
    latest = load_site_state(root, federation_id, site, before_round=round_number) or {}
    state = {k: v for k, v in accepted.items() if k not in LATEST_STATE}
    state.update({k: latest[k] for k in LATEST_STATE if k in latest})
    return state


def _secrets_path(root: Path, federation_id: str, site: str, round_number: int) -> Path:
    return _folder(root, federation_id, site) / f"secure-aggregation-round-{round_number}.safetensors"


def save_round_secrets(
    root: Path, federation_id: str, site: str, round_number: int, arrays: NamedArrays
) -> None:
    """Keep a round's secure-aggregation secrets on the site's disk between the protocol's phases."""
    path = _secrets_path(root, federation_id, site, round_number)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(encode(arrays))
    temporary.chmod(0o600)
    os.replace(temporary, path)


def load_round_secrets(root: Path, federation_id: str, site: str, round_number: int) -> NamedArrays | None:
    """This round's secrets, or None when the site never advertised (or already answered unmasking)."""
    path = _secrets_path(root, federation_id, site, round_number)
    return decode(path.read_bytes()) if path.is_file() else None


def forget_round_secrets(root: Path, federation_id: str, site: str, round_number: int) -> None:
    """Delete a round's secrets once the site answered the unmasking request: it answers only once."""
    _secrets_path(root, federation_id, site, round_number).unlink(missing_ok=True)


def claim_secure_aggregation_phase(
    root: Path, federation_id: str, site: str, round_number: int, phase: str
) -> bool:
    """Record that the site answers `phase` of this round's secure aggregation; False if it already did.

    The record is a file created exclusively (atomic across threads and processes) and never
    removed, so deleting the round's secrets after unmasking does not open the phases again.
    """
    if not phase.isalpha():
        raise ValueError(f"secure-aggregation phase {phase!r} must be a plain word")
    folder = _folder(root, federation_id, site)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        record = folder / f"secure-aggregation-round-{round_number}.{phase}"
        os.close(os.open(record, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    return True


def site_folder(root: Path, federation_id: str, site: str) -> Path:
    """A site's folder for one federation inside its state folder (names that escape it are refused)."""
    return _folder(root, federation_id, site)


_NOISE_KEY_FILE = "noise.key"


def site_noise_key(root: Path, federation_id: str, site: str) -> bytes:
    """The site's secret noise key for a federation: made once (os.urandom), kept here, never sent."""
    folder = _folder(root, federation_id, site)
    path = folder / _NOISE_KEY_FILE
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f"{_NOISE_KEY_FILE}.{os.getpid()}-{uuid.uuid4().hex}.tmp"
        # Readable by the site's own user only, from the first byte written.
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
            handle.write(new_noise_key())
        try:
            os.link(temporary, path)  # atomic, and never replaces a key another call made first
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ValueError(
            f"site {site!r}: the noise key of federation {federation_id!r} in its state folder is damaged "
            f"({len(key)} bytes, not {KEY_BYTES})"
        )
    return key
