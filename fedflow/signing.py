"""Authenticated updates: each site signs what it sends with its own Ed25519 key.

The signature covers (federation id, round, site, SHA-256 of the payload), so the coordinator
can refuse an update that is forged (wrong key or altered payload), replayed (signed for
another round or federation) or unsigned. Private keys stay with their site and are never
logged; the coordinator holds only public keys.
"""

import hashlib
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedflow.errors import PayloadError


def signed_message(*, federation_id: str, round_number: int, site: str, payload: bytes) -> bytes:
    """The canonical bytes a site signs for one update."""
    fields = {
        "federation": federation_id,
        "round": round_number,
        "site": site,
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def sign_update(
    private_key: Ed25519PrivateKey, *, federation_id: str, round_number: int, site: str, payload: bytes
) -> bytes:
    """The site's Ed25519 signature of its update."""
    return private_key.sign(
        signed_message(federation_id=federation_id, round_number=round_number, site=site, payload=payload)
    )


def verify_update(
    public_key: Ed25519PublicKey | None,
    signature: bytes,
    *,
    federation_id: str,
    round_number: int,
    site: str,
    payload: bytes,
) -> None:
    """Raise PayloadError unless `signature` is the site's signature of this very update."""
    if public_key is None:
        raise PayloadError(f"site {site!r} has no registered public key; its update cannot be authenticated")
    if not signature:
        raise PayloadError(f"site {site!r} sent an unsigned update")
    message = signed_message(
        federation_id=federation_id, round_number=round_number, site=site, payload=payload
    )
    try:
        public_key.verify(signature, message)
    except InvalidSignature as error:
        raise PayloadError(
            f"site {site!r}: signature does not match this federation, round {round_number} and payload "
            "(forged, altered or replayed update)"
        ) from error


def keys_root() -> Path:
    """Where keys live by default: `FEDFLOW_KEYS_DIR` or `./.fedflow/keys`."""
    return Path(os.environ.get("FEDFLOW_KEYS_DIR") or Path.cwd() / ".fedflow" / "keys").resolve()


def create_site_keys(folder: Path, site: str, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write `<site>.key` (private, mode 0600) and `<site>.pub` (for the coordinator)."""
    folder.mkdir(parents=True, exist_ok=True)
    private_path, public_path = folder / f"{site}.key", folder / f"{site}.pub"
    if private_path.exists() and not overwrite:
        raise FileExistsError(f"{private_path} exists; refusing to replace a site's key")
    key = Ed25519PrivateKey.generate()
    private_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private_bytes)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path


def load_private_key(folder: Path, site: str) -> Ed25519PrivateKey | None:
    """The site's private key, or None if it has none."""
    path = folder / f"{site}.key"
    if not path.is_file():
        return None
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise PayloadError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(folder: Path, site: str) -> Ed25519PublicKey | None:
    """The site's registered public key, or None."""
    path = folder / f"{site}.pub"
    if not path.is_file():
        return None
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise PayloadError(f"{path} is not an Ed25519 public key")
    return key
