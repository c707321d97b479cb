"""A site channel that signs every request and accepts only replies signed by their site.

With `authentication.required`, the driver wraps whatever channel it is given (in-process,
Prefect tasks, site deployments) in an `AuthenticatedChannel`: each request is sealed with the
coordinator's key for its site and a fresh call (`fedflow.envelope`), the sealed request goes
through the inner channel, and the reply is opened with the key registered for the site the
channel sent it to, never one a reply names. A site without a registered key is not called; a
reply that is unsigned, forged, altered, or signed for another call fails that site's call, so
at preparation the site is excluded from the whole federation with the reason.
"""

from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedflow.config import AuthConfig
from fedflow.envelope import AuthenticationError, open_reply, seal_request
from fedflow.errors import FedflowError, PayloadError
from fedflow.federation.channel import ReplyHandle, SiteChannel, Undelivered, expect
from fedflow.messages import Message, SignedReply, SignedRequest
from fedflow.signing import COORDINATOR, federation_keys_dir, load_private_key, load_public_key
from fedflow.site_policy import PolicyRefusal


class OpenedReply:
    """A sealed call's reply: `.result()` is the typed reply, once its site's signature is checked."""

    def __init__(
        self, handle: ReplyHandle, *, sealed: SignedRequest, request: Message, site_key: Ed25519PublicKey
    ) -> None:
        self.handle = handle
        self.sealed = sealed
        self.request = request
        self.site_key = site_key

    def result(self) -> Message:
        """The site's reply, authenticated; raises AuthenticationError for anything else."""
        site = self.sealed.site
        try:
            reply = self.handle.result()
        except PolicyRefusal as refusal:
            # A site signs its refusals too: an unsigned one may come from anyone (shown, not believed).
            raise AuthenticationError(
                f"site {site!r}: an unsigned refusal, not authenticated (it says: {refusal})"
            ) from None
        if not isinstance(reply, SignedReply):
            raise AuthenticationError(f"site {site!r} answered with an unsigned {type(reply).__name__}")
        opened = open_reply(reply, request=self.sealed, inner=self.request, site_key=self.site_key)
        return expect(opened, self.request)


class AuthenticatedChannel:
    """Seals requests with the coordinator's key; opens replies with each site's registered key."""

    def __init__(
        self,
        *,
        inner: SiteChannel,
        coordinator_key: Ed25519PrivateKey,
        site_keys: Mapping[str, Ed25519PublicKey | None],
        keys_dir: Path | None = None,
        unusable: Mapping[str, str] | None = None,
    ) -> None:
        self.inner = inner
        self.coordinator_key = coordinator_key
        self.site_keys = dict(site_keys)
        self.keys_dir = keys_dir
        self.unusable = dict(unusable or {})  # site -> why its registered key file cannot be read

    def send(self, requests: Mapping[str, Message]) -> dict[str, ReplyHandle]:
        """A handle per site, in the order of `requests`; a site without a registered key is not called."""
        sealed: dict[str, SignedRequest] = {}
        handles: dict[str, ReplyHandle] = {}
        for site, request in requests.items():
            if self.site_keys.get(site) is None:
                handles[site] = Undelivered(AuthenticationError(self._unregistered(site)))
            else:
                sealed[site] = seal_request(request, site=site, key=self.coordinator_key)
        sent = self.inner.send(sealed) if sealed else {}
        for site, envelope in sealed.items():
            key = self.site_keys[site]
            assert key is not None
            handles[site] = OpenedReply(sent[site], sealed=envelope, request=requests[site], site_key=key)
        return {site: handles[site] for site in requests}

    def _unregistered(self, site: str) -> str:
        where = self.keys_dir / f"{site}.pub" if self.keys_dir is not None else f"{site}.pub"
        if site in self.unusable:
            return (
                f"site {site!r}: its registered public key {where} is not a usable Ed25519 key "
                f"({self.unusable[site]}); put the site's own {site}.pub there"
            )
        return (
            f"site {site!r} has no registered public key ({where}): its replies cannot be authenticated; "
            f"put the site's {site}.pub there (`fedflow keys new {site}` at the site)"
        )


def authenticated(channel: SiteChannel, auth: AuthConfig, sites: list[str]) -> SiteChannel:
    """`channel` itself, or, when the federation requires authentication, the channel sealed with keys."""
    if not auth.required:
        return channel
    folder = federation_keys_dir(auth.keys_dir)
    if COORDINATOR in sites:
        raise FedflowError(f"a site may not be named {COORDINATOR!r}: that name is the coordinator's key")
    site_keys: dict[str, Ed25519PublicKey | None] = {}
    unusable: dict[str, str] = {}
    for site in sites:
        try:
            site_keys[site] = load_public_key(folder, site)
        except (PayloadError, ValueError) as error:  # a broken file excludes its site, not the run
            site_keys[site], unusable[site] = None, str(error)[:200]
    return AuthenticatedChannel(
        inner=channel,
        coordinator_key=_coordinator_key(folder),
        site_keys=site_keys,
        keys_dir=folder,
        unusable=unusable,
    )


def _coordinator_key(folder: Path) -> Ed25519PrivateKey:
    """The coordinator's signing key from its key folder; a FedflowError saying what to do without it."""
    path = folder / f"{COORDINATOR}.key"
    try:
        key = load_private_key(folder, COORDINATOR)
    except (PayloadError, ValueError) as error:
        raise FedflowError(
            f"authentication.required: {path} is not a usable Ed25519 private key ({error})"
        ) from error
    if key is None:
        raise FedflowError(
            f"authentication.required: the coordinator has no signing key ({path}); "
            f"create it with `fedflow keys new --coordinator --dir {folder}` and give coordinator.pub "
            "to every site"
        )
    return key
