"""Ed25519 keys: each site's (`<site>.key` at the site, `<site>.pub` with the coordinator) and the
coordinator's (`coordinator.key` with the coordinator, `coordinator.pub` at every site).

Every request the coordinator sends and every reply a site returns is signed with these keys
when the federation requires authentication (`fedflow.envelope`); a site also signs the
secure-aggregation keys it advertises (`fedflow.secure_aggregation.advertised_keys`). Private
keys stay with their owner and are never logged.
"""

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedflow.errors import PayloadError

COORDINATOR = "coordinator"  # the coordinator's key files: coordinator.key, coordinator.pub


def keys_root() -> Path:
    """Where keys live by default: `FEDFLOW_KEYS_DIR` or `./.fedflow/keys`."""
    return Path(os.environ.get("FEDFLOW_KEYS_DIR") or Path.cwd() / ".fedflow" / "keys").resolve()


def federation_keys_dir(keys_dir: str | None) -> Path:
    """The key folder a federation config names (`authentication.keys_dir`), or the default."""
    return Path(keys_dir).resolve() if keys_dir else keys_root()


def create_site_keys(folder: Path, site: str, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write `<site>.key` (private, mode 0600) and `<site>.pub` (for the other party); `site` may be
    `COORDINATOR`."""
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
    """The private key of `site` (or of the coordinator), or None if the folder has none."""
    path = folder / f"{site}.key"
    if not path.is_file():
        return None
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise PayloadError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(folder: Path, site: str) -> Ed25519PublicKey | None:
    """The registered public key of `site` (or of the coordinator), or None."""
    path = folder / f"{site}.pub"
    if not path.is_file():
        return None
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise PayloadError(f"{path} is not an Ed25519 public key")
    return key
