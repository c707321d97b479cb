"""Signed envelopes: every request signed by the coordinator, every reply by its site, each bound to
federation, round, site and call.

The coordinator seals a request for one site and one call (a fresh random call id) with its
Ed25519 key (`coordinator.key`); the site opens it with the coordinator's public key, answers,
and seals its reply with its own key (`<site>.key`), bound to the same call and to the SHA-256 of
the request body it answers. Each side verifies a signature over bytes it builds from what it
knows itself (its own name; the call it made and the request it sent), never from what a message
says about itself: a reply to another call, round, federation or site, or one signed with any
other key, does not verify. Bodies are JSON text, verified before they are parsed. Key ids
(fingerprints) travel only to make error messages useful; nothing trusts them.
"""

import hashlib
import json
import secrets

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedflow.errors import FedflowError
from fedflow.messages import Message, SignedReply, SignedRequest, reply_from_json, request_from_json

REQUEST_PURPOSE = "fedflow request"
REPLY_PURPOSE = "fedflow reply"


class AuthenticationError(FedflowError):
    """A message not signed by the party it must come from, for this very call."""


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """A key's fingerprint: 16 hex digits of the SHA-256 of its raw public key (for messages only)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sha256_text(text: str) -> str:
    """The SHA-256 of a body (its UTF-8 bytes), in hex."""
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(fields: dict[str, object]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def request_binding(envelope: SignedRequest, site: str) -> bytes:
    """What the coordinator signs: the request body for `site` in this federation, round and call."""
    return _canonical(
        {
            "purpose": REQUEST_PURPOSE,
            "federation": envelope.federation_id,
            "round": envelope.round,
            "site": site,
            "call": envelope.call_id,
            "operation": envelope.operation,
            "body_sha256": sha256_text(envelope.body),
        }
    )


def reply_binding(request: SignedRequest, site: str, body: str) -> bytes:
    """What a site signs: its reply body, bound to the request it answers (its call and digest)."""
    return _canonical(
        {
            "purpose": REPLY_PURPOSE,
            "federation": request.federation_id,
            "round": request.round,
            "site": site,
            "call": request.call_id,
            "request_sha256": sha256_text(request.body),
            "body_sha256": sha256_text(body),
        }
    )


def seal_request(request: Message, *, site: str, key: Ed25519PrivateKey) -> SignedRequest:
    """The coordinator's request for `site`, signed for one fresh call."""
    unsigned = SignedRequest(
        site=site,
        federation_id=request.federation_id,  # type: ignore[attr-defined]  # every request has one
        round=getattr(request, "round", 0),
        operation=str(request.kind),  # type: ignore[attr-defined]
        call_id=secrets.token_hex(16),
        body=request.model_dump_json(),
        key_id=key_id(key),
        signature=b"",
    )
    return unsigned.model_copy(update={"signature": key.sign(request_binding(unsigned, site))})


def _request_problem(envelope: SignedRequest, site: str, coordinator_key: Ed25519PublicKey) -> str:
    """Why a request's signature does not verify, as far as the (untrusted) envelope tells."""
    if envelope.site != site:
        return f"the request is addressed to site {envelope.site[:40]!r}, not to this site"
    held = key_id(coordinator_key)
    if envelope.key_id != held:
        return f"the request is signed by key {envelope.key_id[:16] or '?'}, not by coordinator.pub ({held})"
    return "the request's signature does not verify with coordinator.pub (forged or altered)"


def open_request(envelope: SignedRequest, *, site: str, coordinator_key: Ed25519PublicKey) -> Message:
    """The request inside `envelope`, if the coordinator signed it for this site (else raises)."""
    try:
        coordinator_key.verify(envelope.signature, request_binding(envelope, site))
    except InvalidSignature:
        raise AuthenticationError(_request_problem(envelope, site, coordinator_key)) from None
    request = request_from_json(envelope.body.encode())
    stated = (
        request.kind,
        getattr(request, "federation_id", None),
        getattr(request, "round", 0),
    )
    if isinstance(request, SignedRequest) or stated != (
        envelope.operation,
        envelope.federation_id,
        envelope.round,
    ):
        raise AuthenticationError("the request body does not match its signed envelope")
    return request


def seal_reply(reply: Message, *, request: SignedRequest, site: str, key: Ed25519PrivateKey) -> SignedReply:
    """A site's reply to `request`, signed with its own key."""
    body = reply.model_dump_json()
    return SignedReply(
        site=site,
        federation_id=request.federation_id,
        round=request.round,
        call_id=request.call_id,
        request_sha256=sha256_text(request.body),
        body=body,
        key_id=key_id(key),
        signature=key.sign(reply_binding(request, site, body)),
    )


def _reply_problem(sealed: SignedReply, request: SignedRequest, site_key: Ed25519PublicKey) -> str:
    """Why a reply's signature does not verify, as far as the (untrusted) reply tells."""
    site = request.site
    if (sealed.call_id, sealed.request_sha256, sealed.site) != (
        request.call_id,
        sha256_text(request.body),
        site,
    ):
        return f"site {site!r}: the reply answers another call (replayed or misrouted); refused"
    registered = key_id(site_key)
    if sealed.key_id != registered:
        return (
            f"site {site!r}: the reply is signed by key {sealed.key_id or '?'}, not by the site's registered "
            f"key {registered} ({site}.pub): the site signs with another key than the one registered here, "
            "or another party signed it"
        )
    return f"site {site!r}: the reply's signature does not verify with its registered key (forged or altered)"


def open_reply(
    sealed: SignedReply, *, request: SignedRequest, inner: Message, site_key: Ed25519PublicKey
) -> Message:
    """The reply to `inner` (sent as `request`), if its site signed it for this call.

    A signed refusal is raised as the site's PolicyRefusal; anything not signed by the site's key
    for this call is an AuthenticationError.
    """
    try:
        site_key.verify(sealed.signature, reply_binding(request, request.site, sealed.body))
    except InvalidSignature:
        raise AuthenticationError(_reply_problem(sealed, request, site_key)) from None
    return reply_from_json(inner, sealed.body.encode())
