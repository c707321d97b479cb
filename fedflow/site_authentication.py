"""A site's side of authentication: it answers only requests its coordinator signed for it, each call
once, and signs every reply (refusals too) with its own key.

The site trusts the coordinator's public key in its own key folder (`coordinator.pub`, given to
it out of band), never a key a request brings. Whether unsigned requests are refused is the
site's own decision (`require_authentication` in its policy); a signed request is always checked.
Refusals say which rule refused and which key signed what (fingerprints), never anything else.
"""

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedflow.envelope import AuthenticationError, key_id, open_request, seal_reply
from fedflow.errors import FedflowError, PayloadError
from fedflow.messages import Message, RefusalReply, SignedReply, SignedRequest
from fedflow.signing import COORDINATOR, load_private_key, load_public_key
from fedflow.site_policy import PolicyRefusal
from fedflow.site_state import site_folder

_LOCAL_LOG = logging.getLogger("fedflow.site")
CALLS_FOLDER = "calls"
_CATEGORY = 200  # a refusal's category travels in a RefusalReply (at most 200 characters)


def authentication_problems(keys_dir: Path, site: str) -> dict[str, str]:
    """What a site lacks to answer signed requests ({file: what is wrong, what to do}): its own
    signing key and the coordinator's public key."""
    problems = {}
    for name, load, fix in (
        (f"{site}.key", load_private_key, f"create it with `fedflow keys new {site} --dir {keys_dir}`"),
        (f"{COORDINATOR}.pub", load_public_key, "copy the coordinator's coordinator.pub there"),
    ):
        try:
            found = load(keys_dir, name.rsplit(".", 1)[0])
        except (PayloadError, ValueError) as error:
            problems[name] = f"{keys_dir / name} is not a usable Ed25519 key ({error})"
            continue
        if found is None:
            problems[name] = f"{keys_dir / name} is missing: {fix}"
    return problems


def claim_call(root: Path, federation_id: str, site: str, call_id: str) -> bool:
    """Record that the site answers this call; False if it already did (a replayed request).

    The record is a file created exclusively (atomic across threads and processes), kept for the
    life of the site's state folder.
    """
    if not call_id.isalnum():
        raise ValueError(f"call id {call_id!r} must be letters and digits")
    folder = site_folder(root, federation_id, site) / CALLS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(folder / call_id, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    return True


class SiteAuthenticator:
    """Opens the coordinator's signed requests for one site and signs the site's replies."""

    def __init__(self, *, site: str, keys_dir: Path, state_dir: Path, required: bool = False) -> None:
        self.site = site
        self.keys_dir = keys_dir
        self.state_dir = state_dir
        self.required = required

    def admit_unsigned(self, request: Message) -> None:
        """Refuse an unsigned request when the site's policy requires authentication."""
        if self.required:
            self._refuse(f"site {self.site!r} answers only requests signed by the coordinator")

    def answer(self, envelope: SignedRequest, respond: Callable[[Message], Message]) -> SignedReply:
        """The site's signed reply to a request the coordinator signed for it (else a refusal)."""
        coordinator, own = self._keys()
        try:
            request = open_request(envelope, site=self.site, coordinator_key=coordinator)
        except AuthenticationError as error:
            self._refuse(str(error))
        if not claim_call(self.state_dir, envelope.federation_id, self.site, envelope.call_id):
            self._refuse(f"call {envelope.call_id} was already answered (a replayed request)")
        if envelope.operation == "prepare":
            # What lets an operator see why the coordinator may refuse this site: the key it signs with.
            _LOCAL_LOG.info(
                "site %s answers federation %s signed with key %s (the coordinator must hold this %s.pub)",
                self.site,
                envelope.federation_id,
                key_id(own),
                self.site,
            )
        try:
            reply = respond(request)
        except PolicyRefusal as refusal:
            reply = RefusalReply(category=str(refusal)[:_CATEGORY])
        return seal_reply(reply, request=envelope, site=self.site, key=own)

    def _keys(self) -> tuple[Ed25519PublicKey, Ed25519PrivateKey]:
        """The coordinator's public key and the site's own signing key, from the site's key folder."""
        problems = authentication_problems(self.keys_dir, self.site)
        coordinator = load_public_key(self.keys_dir, COORDINATOR) if not problems else None
        own = load_private_key(self.keys_dir, self.site) if not problems else None
        if coordinator is None or own is None:
            _LOCAL_LOG.error(
                "site %s cannot answer signed requests: %s", self.site, "; ".join(problems.values())
            )
            # File names only: the folder's path stays in the site's own log.
            self._refuse(f"site {self.site!r} has no usable {' or '.join(problems)} (see its own log)")
        return coordinator, own

    def _refuse(self, reason: str) -> NoReturn:
        """Refuse with `reason` (logged at the site too): the category the coordinator sees."""
        _LOCAL_LOG.warning("site %s refused a request: %s", self.site, reason)
        raise PolicyRefusal(f"site authentication: {reason}"[:_CATEGORY])


def require_keys(keys_dir: Path, site: str) -> None:
    """Raise FedflowError naming what is missing when a site cannot answer signed requests."""
    problems = authentication_problems(keys_dir, site)
    if problems:
        raise FedflowError(f"site {site!r} requires authentication, but " + "; ".join(problems.values()))
