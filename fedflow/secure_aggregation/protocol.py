"""The four phases of secure aggregation, as pure functions for the site and the coordinator.

Round r, sites U (sorted by name, indices 1..n), threshold t:
1. advertise: each site makes fresh X25519 key pairs (one to encrypt shares, one for masks) and
   a random self-mask seed b; only the public keys leave.
2. share: each site Shamir-shares its mask private key and b (t of n) and encrypts share v for
   site v with AES-GCM under the key it agrees with v; the coordinator only routes ciphertexts.
3. mask: each site adds PRG(b) and, for every other site v, +PRG(s_uv) if u < v else -PRG(s_uv)
   to its fixed-point update; the pairwise masks cancel in the sum over all of U.
4. unmask: the surviving sites reveal their shares of b for survivors and of the mask key for
   the sites that dropped after phase 2; with t shares per secret the coordinator removes every
   self mask and the dropped sites' leftover pairwise masks, and is left with the plain sum.

A site binds what it agreed to: the roster, threshold and round when it shares, the members when
it masks (`RoundTerms`); it reveals only for survivors among those members, itself included.
Checking the advertised keys (well formed, signed by their sites) is `advertised_keys.py`.
"""

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from pydantic import BaseModel, ConfigDict

from fedflow.errors import FedflowError
from fedflow.secure_aggregation.shamir import SHARE_BYTES, combine_shares, split_secret

_NONCE_BYTES = 12


class SecureAggregationError(FedflowError):
    """The protocol cannot go on: too few sites, a share that does not decrypt, a wrong roster."""


class PublicKeys(BaseModel):
    """What a site advertises: two X25519 public keys (raw 32 bytes each)."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    cipher: bytes
    mask: bytes


@dataclass(frozen=True)
class SiteSecrets:
    """A site's secrets for one round; they never leave the site."""

    cipher_key: bytes
    mask_key: bytes
    self_seed: bytes

    @classmethod
    def generate(cls) -> "SiteSecrets":
        """Fresh keys and seed from the operating system's CSPRNG."""
        return cls(
            cipher_key=_private_bytes(X25519PrivateKey.generate()),
            mask_key=_private_bytes(X25519PrivateKey.generate()),
            self_seed=os.urandom(32),
        )

    def public(self) -> PublicKeys:
        """The public halves, for the roster."""
        return PublicKeys(cipher=_public_of(self.cipher_key), mask=_public_of(self.mask_key))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """As uint8 arrays, to keep on the site's disk between phases."""
        return {
            name: np.frombuffer(getattr(self, name), dtype=np.uint8).copy()
            for name in ("cipher_key", "mask_key", "self_seed")
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> "SiteSecrets":
        """The inverse of `to_arrays`."""
        return cls(
            **{
                name: np.asarray(arrays[name], dtype=np.uint8).tobytes()
                for name in ("cipher_key", "mask_key", "self_seed")
            }
        )


def _private_bytes(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def _public_of(private: bytes) -> bytes:
    return (
        X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def _agree(private: bytes, public: bytes, *, purpose: bytes, context: bytes) -> bytes:
    """A 32-byte key both ends derive: HKDF-SHA256 over the X25519 shared secret."""
    shared = X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(public))
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"fedflow-secagg|" + purpose + b"|" + context
    ).derive(shared)


def expand_mask(seed: bytes, length: int) -> np.ndarray:
    """`length` uint64 values from a 32-byte seed: the ChaCha20 keystream (a CSPRNG)."""
    encryptor = Cipher(algorithms.ChaCha20(seed, b"\x00" * 16), mode=None).encryptor()
    return np.frombuffer(encryptor.update(b"\x00" * (8 * length)), dtype=np.uint64).copy()


def plan_digest(
    roster: Mapping[str, PublicKeys], threshold: int, context: bytes, members: Iterable[str] | None = None
) -> bytes:
    """What a site agreed to: the roster, threshold and round it shared under (and, once it masked,
    the members it masked with); later phases must present the same."""
    digest = hashlib.sha256(context + b"|" + str(threshold).encode())
    for site in sorted(roster):
        digest.update(b"|" + site.encode() + b"=" + roster[site].cipher + roster[site].mask)
    if members is not None:
        # Names cannot contain "\x00": the list is read back unambiguously.
        digest.update(b"|members=" + b"\x00".join(site.encode() for site in sorted(set(members))))
    return digest.digest()


@dataclass(frozen=True)
class RoundTerms:
    """What a site masked under: the roster, the members that mask, the threshold and the round."""

    roster: Mapping[str, PublicKeys]
    members: tuple[str, ...]
    threshold: int
    context: bytes

    def digest(self) -> bytes:
        """The plan digest with the members: what the site records when it masks."""
        return plan_digest(self.roster, self.threshold, self.context, self.members)


def holder_indices(roster: Iterable[str]) -> dict[str, int]:
    """Share index of every site: its 1-based position in name order."""
    return {site: index for index, site in enumerate(sorted(roster), start=1)}


def threshold_for(sites: int, max_dropouts: int) -> int:
    """t = n - max_dropouts, but always a strict majority, so that no two disjoint groups reach t."""
    return max(sites - max_dropouts, sites // 2 + 1)


def _aad(context: bytes, sender: str, recipient: str) -> bytes:
    return context + b"|" + sender.encode() + b"->" + recipient.encode()


def share_secrets(
    secrets: SiteSecrets, *, site: str, roster: Mapping[str, PublicKeys], threshold: int, context: bytes
) -> dict[str, bytes]:
    """Phase 2: encrypted shares of the site's mask key and self seed, one per roster member."""
    if site not in roster:
        raise SecureAggregationError(f"site {site!r} is not in this round's roster")
    if roster[site] != secrets.public():
        raise SecureAggregationError(
            f"site {site!r}: the roster does not carry the keys this site advertised (substituted keys)"
        )
    if not len(roster) // 2 < threshold <= len(roster):
        raise SecureAggregationError(
            f"threshold {threshold} for {len(roster)} sites must be a strict majority: a smaller one "
            "would let the coordinator rebuild both of a site's secrets from two disjoint groups"
        )
    indices = holder_indices(roster)
    seed_shares = split_secret(secrets.self_seed, threshold=threshold, holders=len(roster))
    key_shares = split_secret(secrets.mask_key, threshold=threshold, holders=len(roster))
    out: dict[str, bytes] = {}
    for recipient, keys in roster.items():
        position = indices[recipient] - 1
        plaintext = seed_shares[position][1] + key_shares[position][1]
        key = _agree(secrets.cipher_key, keys.cipher, purpose=b"share", context=context)
        nonce = os.urandom(_NONCE_BYTES)
        out[recipient] = nonce + AESGCM(key).encrypt(nonce, plaintext, _aad(context, site, recipient))
    return out


def check_members(site: str, terms: RoundTerms) -> None:
    """Refuse to mask with members that leave this site out, reach outside the roster, or are
    fewer than the threshold (the sum of too few updates protects nothing)."""
    maskers = set(terms.members)
    if site not in maskers or not maskers <= set(terms.roster):
        raise SecureAggregationError(
            f"site {site!r} did not share its keys this round, or the members are wrong"
        )
    if len(maskers) < terms.threshold:
        raise SecureAggregationError(
            f"only {len(maskers)} site(s) would mask; the threshold is {terms.threshold}"
        )


def mask_update(
    encoded: np.ndarray,
    secrets: SiteSecrets,
    *,
    site: str,
    roster: Mapping[str, PublicKeys],
    context: bytes,
    members: Iterable[str] | None = None,
    threshold: int = 1,
) -> np.ndarray:
    """Phase 3: the fixed-point update plus the self mask and the signed pairwise masks (mod 2^64).

    `members` are the sites that completed phase 2 (default: the whole roster); only they mask.
    Fewer than `threshold` members is refused: the sum of too few updates protects nothing.
    """
    maskers = set(roster if members is None else members)
    check_members(
        site, RoundTerms(roster=roster, members=tuple(maskers), threshold=threshold, context=context)
    )
    masked: np.ndarray = np.asarray(encoded, dtype=np.uint64) + expand_mask(secrets.self_seed, encoded.size)
    for other, keys in roster.items():
        if other == site or other not in maskers:
            continue
        pairwise = expand_mask(
            _agree(secrets.mask_key, keys.mask, purpose=b"mask", context=context), encoded.size
        )
        masked = masked + pairwise if site < other else masked - pairwise
    return masked


def reveal_shares(
    secrets: SiteSecrets,
    *,
    site: str,
    ciphertexts: Mapping[str, bytes],
    terms: RoundTerms,
    survivors: Iterable[str],
) -> dict[str, bytes]:
    """Phase 4 at a site: per member, its share of b (member survived) or of its mask key (dropped).

    A site never reveals both for one sender; it reveals only for the members it masked with, and
    only when the survivors are at least t of those members, itself among them (a survivor set
    outside the members would let the coordinator strip this site's pairwise masks).
    """
    alive, members = set(survivors), set(terms.members)
    _check_survivors(site, alive, members, terms)
    if not alive <= set(ciphertexts):
        # A survivor must have shared its secrets with this site (be a member of phase 2).
        raise SecureAggregationError(
            f"survivors {sorted(alive - set(ciphertexts))} did not share with this site"
        )
    out: dict[str, bytes] = {}
    for sender, blob in ciphertexts.items():
        if sender not in members:
            continue  # the coordinator needs no secret of a site that did not mask with this one
        key = _agree(secrets.cipher_key, terms.roster[sender].cipher, purpose=b"share", context=terms.context)
        try:
            plaintext = AESGCM(key).decrypt(
                blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _aad(terms.context, sender, site)
            )
        except Exception as error:  # InvalidTag: forged, replayed or misrouted
            raise SecureAggregationError(f"the share from site {sender!r} does not authenticate") from error
        out[sender] = plaintext[:SHARE_BYTES] if sender in alive else plaintext[SHARE_BYTES:]
    return out


def _check_survivors(site: str, alive: set[str], members: set[str], terms: RoundTerms) -> None:
    """Refuse a survivor set this site must not reveal shares for."""
    if not members <= set(terms.roster):
        raise SecureAggregationError(f"members {sorted(members - set(terms.roster))} are not in the roster")
    if site not in alive:
        raise SecureAggregationError(f"site {site!r} is asked to unmask but is not among the survivors")
    if not alive <= members:
        raise SecureAggregationError(
            f"survivors {sorted(alive - members)} are not among the members site {site!r} masked with; "
            "refusing to reveal shares"
        )
    if len(alive) < terms.threshold:
        raise SecureAggregationError(
            f"only {len(alive)} site(s) survived but the threshold is {terms.threshold}; "
            "refusing to reveal shares"
        )


def unmask_sum(
    masked_sum: np.ndarray,
    *,
    responses: Mapping[str, Mapping[str, bytes]],
    roster: Mapping[str, PublicKeys],
    survivors: Iterable[str],
    threshold: int,
    context: bytes,
    members: Iterable[str] | None = None,
) -> np.ndarray:
    """Phase 4 at the coordinator: the survivors' plain fixed-point sum from their masked sum.

    `responses` maps each answering site to the shares it revealed (sender -> share bytes);
    `members` are the sites that masked (completed phase 2; default: the whole roster).
    """
    alive = sorted(set(survivors))
    maskers = set(roster if members is None else members)
    indices = holder_indices(roster)
    total = np.asarray(masked_sum, dtype=np.uint64).copy()

    def rebuild(sender: str) -> bytes:
        shares = [
            (indices[holder], revealed[sender])
            for holder, revealed in responses.items()
            if sender in revealed
        ]
        if len(shares) < threshold:
            raise SecureAggregationError(
                f"only {len(shares)} share(s) of site {sender!r}'s secret came back; {threshold} are needed"
            )
        return combine_shares(shares, threshold=threshold)

    for site in alive:
        total = total - expand_mask(rebuild(site), total.size)
    for dropped in sorted(maskers - set(alive)):
        mask_key = rebuild(dropped)
        for site in alive:
            pairwise = expand_mask(
                _agree(mask_key, roster[site].mask, purpose=b"mask", context=context), total.size
            )
            # The survivor added +mask when its name sorts before the dropped site's.
            total = total - pairwise if site < dropped else total + pairwise
    return total
