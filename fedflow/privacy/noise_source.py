"""Where differential-privacy noise comes from: a party's secret key, or (experiments only) the seed.

Secret noise (the default): each party holds a 32-byte key from `os.urandom` that never travels
and is never logged (the coordinator's in its checkpoint, a site's in its own state folder). The
noise of one (purpose, round, site) is a ChaCha20 keystream (RFC 8439, `cryptography`) under the
stream key HMAC-SHA256(key, [purpose, round, site, binding]): the same inputs draw the same noise,
so a round repeated after a crash repeats exactly, and nobody without the key can regenerate it.
The keystream becomes Gaussian samples by an exact, documented method:

1. 8 bytes little-endian -> a 64-bit integer; its top 53 bits k give u = (k + 1/2) / 2^53, a
   uniform in (0, 1) that is exact in float64 and never 0 (so log(u) is finite);
2. Box-Muller on (u1, u2): sqrt(-2 ln u1) * (cos 2 pi u2, sin 2 pi u2), two N(0, 1) samples;
3. each released sample is the sum of four such samples divided by 2 (again N(0, 1)), as in
   Opacus's secure mode, against floating-point attacks on a single sample (Mironov, "On
   Significance of the Least Significant Bits for Differential Privacy", CCS 2012; Holohan &
   Braghin, "Secure Random Sampling in Differential Privacy", ESORICS 2021, section 5.1).

Seeded noise (`privacy.reproducible_noise`): numpy's generator seeded from the federation's seed,
exactly as before secret noise existed; anyone who knows the seed regenerates it. For fixed-seed
experiments only: labelled in MLflow, refused by served sites and by cross-silo runs.
"""

import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms

KEY_BYTES = 32
_DOMAIN = "fedflow-dp-noise-v1"
_TOP_53_BITS = np.uint64(11)
_TWO_TO_53 = float(2**53)
_SAMPLES_PER_VALUE = 4  # Opacus's secure mode: the sum of 2n samples over sqrt(2n), n = 2


def new_noise_key() -> bytes:
    """A fresh secret noise key from the operating system's cryptographically secure source."""
    return os.urandom(KEY_BYTES)


def stream_key(key: bytes, purpose: str, round_number: int, site: str, binding: str = "") -> bytes:
    """The ChaCha20 key of one noise stream: HMAC-SHA256 of the labels under the party's key."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"a noise key has {KEY_BYTES} bytes, got {len(key)}")
    labels = json.dumps([_DOMAIN, purpose, round_number, site, binding]).encode()
    return hmac.new(key, labels, hashlib.sha256).digest()


class NoiseSource(Protocol):
    """A stream of Gaussian noise; successive calls continue the stream."""

    def normal(self, std: float, shape: tuple[int, ...]) -> np.ndarray:
        """float64 samples of N(0, std^2) in `shape`."""
        ...


@dataclass
class SecretNoise:
    """Gaussian noise from a ChaCha20 keystream (see the module's docstring for the exact method)."""

    key: bytes  # a stream key (`stream_key`), never the party's own key
    _cipher: CipherContext = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Each stream key is used for one stream, so a fixed nonce never repeats under a key.
        self._cipher = Cipher(algorithms.ChaCha20(self.key, bytes(16)), mode=None).encryptor()

    def uniforms(self, count: int) -> np.ndarray:
        """`count` uniforms in (0, 1): 53 bits of keystream each, exact in float64."""
        raw = self._cipher.update(bytes(8 * count))
        words = np.frombuffer(raw, dtype="<u8") >> _TOP_53_BITS
        return (words.astype(np.float64) + 0.5) / _TWO_TO_53

    def standard_normal(self, count: int) -> np.ndarray:
        """`count` N(0, 1) samples, each the sum of four Box-Muller samples divided by 2."""
        pairs = _SAMPLES_PER_VALUE * count // 2
        u = self.uniforms(2 * pairs)
        radius, angle = np.sqrt(-2.0 * np.log(u[:pairs])), 2.0 * np.pi * u[pairs:]
        samples = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])
        total: np.ndarray = samples.reshape(_SAMPLES_PER_VALUE, count).sum(axis=0)
        return total / 2.0  # sqrt(4): the sum of four N(0, 1) has variance 4

    def normal(self, std: float, shape: tuple[int, ...]) -> np.ndarray:
        """float64 samples of N(0, std^2) in `shape`."""
        count = int(np.prod(shape, dtype=np.int64))
        return std * self.standard_normal(count).reshape(shape)


@dataclass
class SeededNoise:
    """Reproducible noise from numpy's generator and a public seed: experiments only."""

    seed: int
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def normal(self, std: float, shape: tuple[int, ...]) -> np.ndarray:
        """float64 samples of N(0, std^2) in `shape` (numpy's own normal, as before secret noise)."""
        samples: np.ndarray = self._rng.normal(0.0, std, size=shape)
        return samples


@dataclass(frozen=True)
class NoiseKey:
    """A party's secret noise key and what its streams are bound to (a digest of the request)."""

    secret: bytes = field(repr=False)
    binding: str = ""

    def source(self, purpose: str, round_number: int, site: str) -> SecretNoise:
        """The noise stream of one purpose, round and site."""
        return SecretNoise(key=stream_key(self.secret, purpose, round_number, site, self.binding))

    def torch_seed(self, purpose: str, round_number: int, site: str) -> int:
        """A 64-bit seed for a torch generator, unknown to anyone without the key."""
        key = stream_key(self.secret, purpose, round_number, site, self.binding)
        return int.from_bytes(key[:8], "little")
