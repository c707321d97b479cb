"""t-of-n Shamir secret sharing of 32-byte secrets, with PyCryptodome's GF(2^128) Shamir.

A 32-byte secret is shared as two independent 16-byte halves; a share is the site index and
the two 16-byte half-shares. Fewer than t shares say nothing about the secret.
"""

from Crypto.Protocol.SecretSharing import Shamir

SECRET_BYTES = 32
SHARE_BYTES = 32
_HALF = 16


def split_secret(secret: bytes, *, threshold: int, holders: int) -> list[tuple[int, bytes]]:
    """`holders` shares (indices 1..holders) of which any `threshold` rebuild the secret."""
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"a secret must be {SECRET_BYTES} bytes, got {len(secret)}")
    if not 1 <= threshold <= holders:
        raise ValueError(f"threshold must be between 1 and {holders}, got {threshold}")
    low = Shamir.split(threshold, holders, secret[:_HALF])
    high = Shamir.split(threshold, holders, secret[_HALF:])
    return [
        (index, low_share + high_share) for (index, low_share), (_, high_share) in zip(low, high, strict=True)
    ]


def combine_shares(shares: list[tuple[int, bytes]], *, threshold: int) -> bytes:
    """The secret from at least `threshold` shares (the first `threshold` by index are used)."""
    if len(shares) < threshold:
        raise ValueError(f"{len(shares)} share(s) cannot rebuild a secret shared with threshold {threshold}")
    chosen = sorted(shares)[:threshold]
    low = Shamir.combine([(index, share[:_HALF]) for index, share in chosen])
    high = Shamir.combine([(index, share[_HALF:]) for index, share in chosen])
    return low + high
