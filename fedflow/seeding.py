"""Derive independent, reproducible seeds from a base seed and a few labels."""

import hashlib


def derive_seed(base: int, *labels: object) -> int:
    """Return a 63-bit seed that depends only on `base` and `labels` (stable across processes)."""
    text = "/".join([str(base), *(str(label) for label in labels)])
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
