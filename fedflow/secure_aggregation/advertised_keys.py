"""Phase 1's public keys, checked: well-formed X25519 points, signed by the site that made them.

Bonawitz et al. 2017 (section 6, the actively secure variant) have every site sign the keys it
advertises with a long-term signing key, and every site verify the other members' signatures
before it shares its secrets: otherwise whoever routes the keys (the coordinator, or anyone who
can write to the exchange) can put its own keys in the roster, receive the shares meant for
another site and unmask one site's update. fedflow's long-term keys are the sites' Ed25519 keys
(`fedflow/signing.py`): a site signs with `<site>.key` and verifies another member with the
`<member>.pub` in its own key folder. The signature is bound to federation, round and site, so
keys signed for one round or one site cannot be replayed in another.
"""

import json
from collections.abc import Callable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from fedflow.secure_aggregation.protocol import PublicKeys, SecureAggregationError

KEY_BYTES = 32
PublicKeyOf = Callable[[str], Ed25519PublicKey | None]


def key_problem(keys: PublicKeys) -> str | None:
    """Why advertised keys cannot be used (wrong length, a low-order X25519 point), or None."""
    for name in ("cipher", "mask"):
        value = getattr(keys, name)
        if len(value) != KEY_BYTES:
            return f"its {name} key is {len(value)} bytes, not {KEY_BYTES}"
        try:
            # A low-order point gives every partner the all-zero shared secret: refused here.
            X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(value))
        except ValueError:
            return f"its {name} key is not a usable X25519 public key (a low-order point)"
    return None


def keys_message(*, federation_id: str, round_number: int, site: str, keys: PublicKeys) -> bytes:
    """The canonical bytes a site signs for the keys it advertises in one round."""
    fields = {
        "purpose": "fedflow secure-aggregation keys",
        "federation": federation_id,
        "round": round_number,
        "site": site,
        "cipher": keys.cipher.hex(),
        "mask": keys.mask.hex(),
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def sign_keys(
    private_key: Ed25519PrivateKey, *, federation_id: str, round_number: int, site: str, keys: PublicKeys
) -> bytes:
    """The site's Ed25519 signature of the keys it advertises."""
    return private_key.sign(
        keys_message(federation_id=federation_id, round_number=round_number, site=site, keys=keys)
    )


def signature_problem(
    public_key: Ed25519PublicKey | None,
    signature: bytes,
    *,
    federation_id: str,
    round_number: int,
    site: str,
    keys: PublicKeys,
) -> str | None:
    """Why `signature` is not `site`'s signature of these keys for this round, or None."""
    if public_key is None:
        return "no registered public key to verify its advertised keys with"
    if not signature:
        return "its advertised keys are not signed"
    message = keys_message(federation_id=federation_id, round_number=round_number, site=site, keys=keys)
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return "the signature on its advertised keys does not verify (substituted, forged or replayed keys)"
    return None


def check_roster(
    roster: Mapping[str, PublicKeys],
    signatures: Mapping[str, bytes],
    *,
    federation_id: str,
    round_number: int,
    public_key_of: PublicKeyOf,
    demanded: Callable[[str], bool],
) -> None:
    """Raise SecureAggregationError unless every member's keys are well formed and, for every member
    `demanded(member)` names, signed by that member for this round (checked with `public_key_of`)."""
    for member, keys in sorted(roster.items()):
        # Names become file names (`<member>.pub`): never let one reach outside the key folder.
        plain = member and not member.startswith(".") and not any(c in member for c in "/\\\x00")
        problem = key_problem(keys) if plain else "not a plain site name"
        if problem is None and demanded(member):
            problem = signature_problem(
                public_key_of(member),
                signatures.get(member, b""),
                federation_id=federation_id,
                round_number=round_number,
                site=member,
                keys=keys,
            )
        if problem is not None:
            raise SecureAggregationError(f"roster member {member!r}: {problem}; refusing to share secrets")
