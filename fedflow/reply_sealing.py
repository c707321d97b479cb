"""Replies encrypted to the coordinator: read access to the exchange shows nothing of them.

For every call the coordinator makes a fresh X25519 key pair, keeps the private key in memory
and leaves the public key beside the request. The site encrypts its reply to it: a fresh
ephemeral X25519 key of its own, HKDF-SHA256 over the shared secret, ChaCha20-Poly1305 with the
call's address (site, session, call) as associated data, so a sealed reply moved to another call
does not open. Only the coordinator's in-memory key opens it; a key lost with a crashed
coordinator loses only replies that were never read. (Authenticity is the signed envelope's
job, `fedflow.envelope`: this only keeps the contents from readers of the store.)
"""

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict, Field

from fedflow.errors import FedflowError

_INFO = b"fedflow sealed reply v1"


class SealingError(FedflowError):
    """A sealed reply that does not open: another key, another call, or altered bytes."""


class SealedReply(BaseModel):
    """What the exchange holds instead of a reply (bytes as base64 in JSON)."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    version: int = Field(default=1, ge=1, le=1)
    ephemeral_key: bytes = Field(min_length=32, max_length=32)
    nonce: bytes = Field(min_length=12, max_length=12)
    ciphertext: bytes


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def new_reply_key() -> tuple[X25519PrivateKey, bytes]:
    """A fresh key pair for one call: the private key (keep it in memory) and the raw public key."""
    private = X25519PrivateKey.generate()
    return private, _raw(private.public_key())


def _cipher(shared: bytes, ephemeral: bytes, recipient: bytes) -> ChaCha20Poly1305:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=_INFO).derive(shared)
    return ChaCha20Poly1305(key)


def seal(plaintext: bytes, *, recipient: bytes, context: str) -> bytes:
    """`plaintext` encrypted to the raw X25519 public key `recipient`, bound to `context` (JSON bytes)."""
    try:
        recipient_key = X25519PublicKey.from_public_bytes(recipient)
    except ValueError as error:
        raise SealingError(f"the reply key is not an X25519 public key ({error})") from None
    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw = _raw(ephemeral.public_key())
    cipher = _cipher(ephemeral.exchange(recipient_key), ephemeral_raw, recipient)
    nonce = os.urandom(12)
    sealed = SealedReply(
        ephemeral_key=ephemeral_raw,
        nonce=nonce,
        ciphertext=cipher.encrypt(nonce, plaintext, context.encode()),
    )
    return sealed.model_dump_json().encode()


def open_sealed(data: bytes, *, key: X25519PrivateKey, context: str) -> bytes:
    """The plaintext of a sealed reply, if it was sealed to `key` for `context` (else SealingError)."""
    try:
        sealed = SealedReply.model_validate_json(data)
        shared = key.exchange(X25519PublicKey.from_public_bytes(sealed.ephemeral_key))
    except ValueError as error:
        raise SealingError(f"not a sealed reply ({type(error).__name__})") from None
    cipher = _cipher(shared, sealed.ephemeral_key, _raw(key.public_key()))
    try:
        return cipher.decrypt(sealed.nonce, sealed.ciphertext, context.encode())
    except InvalidTag:
        raise SealingError("the sealed reply does not open: another key or call, or altered") from None
