"""The exchange: where coordinator and sites leave each other messages in cross-silo mode.

An fsspec location (a local or shared folder, `s3://bucket/prefix`, …). Every site has its own
prefix, so storage permissions can be set per site (deployments/README.md has a bucket policy):

    {exchange}/{site}/{session}/alive.json                the site's heartbeat (the site writes)
    {exchange}/{site}/{session}/close                     the coordinator ends the session
    {exchange}/{site}/standby-…/claim.json, claimed.json  a coordinator takes a warm standby session
    {exchange}/{site}/{session}/{call}/request.json       a request (the coordinator writes)
    {exchange}/{site}/{session}/{call}/response.json      its reply (the site writes)
    {exchange}/{site}/{session}/{call}/failure.json       or why the site could not answer

A session is one federation's conversation with one site (one warm site process). Everything in
it is JSON validated against fedflow's own types (bytes as base64, model payloads as
safetensors inside), so nothing read from it is unpickled or imported. Sizes are checked on the
bytes actually read, before anything is parsed. Site data paths are never written to it.
"""

import json
import os
import re

import fsspec
from pydantic import BaseModel, ConfigDict, Field

from fedflow.checkpoint import state_root
from fedflow.errors import FedflowError

REQUEST = "request.json"
RESPONSE = "response.json"
FAILURE = "failure.json"
ALIVE = "alive.json"
CLOSE = "close"
CLAIM = "claim.json"  # a coordinator takes a site's standby session for its federation
CLAIMED = "claimed.json"  # the site's answer: whose claim it took
STANDBY = "standby-"  # sessions a site starts ahead of time, warm, for the next federation
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MAX_SMALL_MESSAGE = 64 * 1024  # heartbeats, failures: never large


class ExchangeError(FedflowError):
    """A message is missing, too large or unreadable."""


class CallFailure(BaseModel):
    """What a site says when it could not answer a call (its type only; details stay in its log)."""

    message: str = Field(max_length=500)


class Heartbeat(BaseModel):
    """A site's sign of life: a counter it raises every `interval_s` (compared, never a clock)."""

    beat: int = Field(ge=0)
    interval_s: float = Field(gt=0)


def default_exchange_url() -> str:
    """`FEDFLOW_EXCHANGE_URL`, or the `exchange` folder beside the coordinator's state."""
    return os.environ.get("FEDFLOW_EXCHANGE_URL") or str(state_root() / "exchange")


def _checked(name: str, what: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise ExchangeError(f"{what} {name!r} must be letters, digits, '.', '-' or '_' (at most 128)")
    return name


class ExchangeRequest(BaseModel):
    """What the coordinator leaves for a call: the request (JSON text: a `SignedRequest` when the
    federation requires authentication) and the call's one-time key to seal the reply to."""

    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    reply_key: bytes = Field(min_length=32, max_length=32)
    request: str


class Claim(BaseModel):
    """A coordinator's claim of a standby session: a fresh nonce and its federation (for the UI)."""

    nonce: str = Field(pattern=r"^[0-9a-f]{32}$")
    federation: str = Field(max_length=200)


class Claimed(BaseModel):
    """The site's answer to a claim: the nonce it accepted and its session run (for liveness)."""

    nonce: str = Field(pattern=r"^[0-9a-f]{32}$")
    flow_run_id: str | None = Field(default=None, max_length=64)


class Exchange:
    """The exchange under one fsspec URL; each site's session is a `Mailbox` in its own prefix."""

    def __init__(self, url: str | None = None, *, max_message_bytes: int = 256 * 1024 * 1024) -> None:
        self.url = (url or default_exchange_url()).rstrip("/")
        self.max_message_bytes = max_message_bytes
        self.fs, self.root = fsspec.core.url_to_fs(self.url)

    def mailbox(self, site: str, session: str) -> "Mailbox":
        """One site's session: `{exchange}/{site}/{session}`."""
        return Mailbox(self, _checked(site, "site"), _checked(session, "session"))

    def standby_sessions(self, site: str) -> list[str]:
        """The site's standby sessions (`standby-*`) that are not claimed yet."""
        prefix = f"{self.root}/{_checked(site, 'site')}"
        if not self.fs.exists(prefix):
            return []
        names = [path.rstrip("/").rsplit("/", 1)[-1] for path in self.fs.ls(prefix, detail=False)]
        return [
            name
            for name in names
            if name.startswith(STANDBY)
            and _NAME.match(name)
            and not self.fs.exists(f"{prefix}/{name}/{CLAIM}")
        ]

    def remove_standbys(self, site: str) -> None:
        """Remove the site's unclaimed standby sessions (its serve process restarted: they are dead)."""
        prefix = f"{self.root}/{_checked(site, 'site')}"
        for name in self.standby_sessions(site):
            self.fs.rm(f"{prefix}/{name}", recursive=True)

    def site_prefix(self, site: str) -> str:
        """Where everything of `site` lives (what its storage permissions cover)."""
        return f"{self.url}/{_checked(site, 'site')}/"


class Mailbox:
    """Read and write the messages of one site's session."""

    def __init__(self, exchange: Exchange, site: str, session: str) -> None:
        self.exchange = exchange
        self.fs = exchange.fs
        self.site = site
        self.session = session
        self.folder = f"{exchange.root}/{site}/{session}"

    def _path(self, call_id: str, name: str) -> str:
        return f"{self.folder}/{_checked(call_id, 'call id')}/{name}"

    def _write(self, path: str, data: bytes) -> None:
        """Write atomically where the filesystem allows (temporary name, then move)."""
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        temporary = path + ".partial"
        self.fs.pipe_file(temporary, data)
        self.fs.mv(temporary, path)

    def _read(self, path: str, what: str, limit: int) -> bytes:
        """At most `limit` bytes: a message over it is refused on what was read, not on a reported size."""
        try:
            with self.fs.open(path, "rb") as handle:
                data: bytes = handle.read(limit + 1)
        except FileNotFoundError:
            raise ExchangeError(f"no {what} in the exchange {self.exchange.url}") from None
        if len(data) > limit:
            raise ExchangeError(f"{what} is over {limit} bytes: refused unread")
        return data

    def write(self, call_id: str, name: str, data: bytes) -> None:
        """Leave a message of a call."""
        self._write(self._path(call_id, name), data)

    def read(self, call_id: str, name: str) -> bytes:
        """A message's bytes; a missing or oversized one is an ExchangeError."""
        limit = MAX_SMALL_MESSAGE if name == FAILURE else self.exchange.max_message_bytes
        return self._read(self._path(call_id, name), f"{name} of call {call_id} of site {self.site}", limit)

    def address(self, call_id: str) -> str:
        """The call's address, `site/session/call` (what a sealed reply is bound to)."""
        return f"{self.site}/{self.session}/{_checked(call_id, 'call id')}"

    def has(self, call_id: str, name: str) -> bool:
        """True when the message is there (complete: messages appear under their name only when written)."""
        return bool(self.fs.exists(self._path(call_id, name)))

    def remove(self, call_id: str) -> None:
        """Delete a call's messages (read, failed or given up on: no one else need see them)."""
        folder = f"{self.folder}/{_checked(call_id, 'call id')}"
        if self.fs.exists(folder):
            self.fs.rm(folder, recursive=True)

    def pending(self) -> list[str]:
        """Calls with a request and no reply yet, oldest request first."""
        found = []
        for path in self.fs.glob(f"{self.folder}/*/{REQUEST}", detail=False):
            call_id = path.rstrip("/").split("/")[-2]
            if _NAME.match(call_id) and not self.has(call_id, RESPONSE) and not self.has(call_id, FAILURE):
                found.append(call_id)
        return found

    def fail(self, call_id: str, message: str) -> None:
        """Say that the site could not answer this call."""
        self.write(call_id, FAILURE, CallFailure(message=message[:500]).model_dump_json().encode())

    def failure(self, call_id: str) -> str:
        """What the site said when it could not answer."""
        return CallFailure.model_validate_json(self.read(call_id, FAILURE)).message

    def beat(self, heartbeat: Heartbeat) -> None:
        """The site's sign of life."""
        self._write(f"{self.folder}/{ALIVE}", heartbeat.model_dump_json().encode())

    def heartbeat(self) -> Heartbeat | None:
        """The site's last sign of life in this session (None: none yet, or unreadable)."""
        try:
            data = self._read(f"{self.folder}/{ALIVE}", "heartbeat", MAX_SMALL_MESSAGE)
            return Heartbeat.model_validate_json(data)
        except (ExchangeError, ValueError, OSError):
            return None

    def close(self, reason: str) -> None:
        """The coordinator ends the session: the site's process finishes its run."""
        self._write(f"{self.folder}/{CLOSE}", json.dumps({"reason": reason[:200]}).encode())

    def closed(self) -> bool:
        """True once the coordinator ended the session."""
        return bool(self.fs.exists(f"{self.folder}/{CLOSE}"))

    def claim(self, claim: Claim) -> None:
        """The coordinator takes this standby session."""
        self._write(f"{self.folder}/{CLAIM}", claim.model_dump_json().encode())

    def read_claim(self) -> Claim | None:
        """The claim on this session, if any (an unreadable one counts as none)."""
        try:
            return Claim.model_validate_json(self._read(f"{self.folder}/{CLAIM}", "claim", MAX_SMALL_MESSAGE))
        except (ExchangeError, ValueError, OSError):
            return None

    def accept(self, claimed: Claimed) -> None:
        """The site says whose claim it took."""
        self._write(f"{self.folder}/{CLAIMED}", claimed.model_dump_json().encode())

    def accepted(self) -> Claimed | None:
        """The site's answer to the claim, once it is there."""
        try:
            data = self._read(f"{self.folder}/{CLAIMED}", "claim answer", MAX_SMALL_MESSAGE)
            return Claimed.model_validate_json(data)
        except (ExchangeError, ValueError, OSError):
            return None

    def clear(self, *, keep_calls: bool = False) -> None:
        """Remove the session's files (the calls too, unless `keep_calls`)."""
        if not self.fs.exists(self.folder):
            return
        for path in self.fs.ls(self.folder, detail=False):
            name = path.rstrip("/").rsplit("/", 1)[-1]
            if name in (ALIVE, CLOSE, CLAIM, CLAIMED) or name.endswith(".partial") or not keep_calls:
                self.fs.rm(path, recursive=True)
        if not self.fs.ls(self.folder, detail=False):
            self.fs.rm(self.folder, recursive=True)
