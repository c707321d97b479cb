"""Where the sites run (`TransportConfig`), and the coordinator's call to a served site.

A cross-silo call leaves the request in the site's session of the exchange (`flows.exchange`),
where the site's warm process (`flows.site_flow`) picks it up, and waits for the reply while the
session's heartbeat shows the site is alive: a dead site fails the call in seconds, a live but
slow one at the round timeout. The reply is sealed to a one-time key of the call
(`fedflow.reply_sealing`): readers of the exchange see ciphertext. Whatever the outcome, the
call's messages are removed (unless `keep_messages` and the call was answered).
"""

import math
import os
import time
import uuid
from typing import TYPE_CHECKING, Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field, field_validator

from fedflow.errors import FedflowError
from fedflow.federation.channel import MissedCall
from fedflow.messages import Message, reply_from_json
from fedflow.reply_sealing import new_reply_key, open_sealed
from flows.exchange import FAILURE, REQUEST, RESPONSE, ExchangeRequest

if TYPE_CHECKING:
    from flows.site_sessions import SiteSession

# 'auto' batching: up to this many sites, each gets its own tasks (a clear per-site view in
# Prefect); more sites are split over one task per core. Threads beyond the cores only contend
# for the GIL, and each task run costs Prefect bookkeeping (see BENCHMARKS.md).
SITES_WITH_OWN_TASKS = 4


class SiteCallError(MissedCall):
    """A site's call was not answered in time."""


class SiteUnreachableError(MissedCall):
    """The call never reached a live site: no deployment, no session, or its heartbeat stopped."""


class TransportConfig(BaseModel):
    """How the coordinator reaches the sites."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["simulation", "cross-silo"] = Field(
        default="simulation",
        description="simulation: every site is a Prefect task of this flow; cross-silo: every site runs its "
        "own deployment (`fedflow site serve`), one warm session per federation.",
    )
    round_timeout_s: float = Field(
        default=600.0, gt=0, description="Cross-silo: a live site's call not answered by then is dropped."
    )
    exchange_url: str | None = Field(
        default=None,
        description="Cross-silo: fsspec URL of the exchange as the coordinator sees it (default "
        "FEDFLOW_EXCHANGE_URL or .fedflow/exchange).",
    )
    poll_interval_s: float = Field(
        default=0.05,
        gt=0,
        description="Cross-silo: how often to look for a reply (raise it for object stores).",
    )
    liveness_timeout_s: float = Field(
        default=15.0,
        gt=0,
        description="Cross-silo: a site whose heartbeat stops for this long is unreachable: its calls fail.",
    )
    start_timeout_s: float = Field(
        default=180.0,
        gt=0,
        description="Cross-silo: how long a site's session (its warm process) may take to start.",
    )
    keep_messages: bool = Field(
        default=False,
        description="Cross-silo: keep each answered call's request and reply in the exchange (debugging).",
    )
    clients_per_task: int | Literal["auto"] = Field(
        default="auto",
        description="Simulation: sites handled by one Prefect task. 'auto': one per site up to "
        f"{SITES_WITH_OWN_TASKS} sites, else one task per CPU core.",
    )

    @field_validator("clients_per_task")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("clients_per_task must be at least 1 (or 'auto')")
        return value

    def sites_per_task(self, sites: int) -> int:
        """How many sites one simulation task handles."""
        if self.clients_per_task == "auto":
            if sites <= SITES_WITH_OWN_TASKS:
                return 1
            return max(1, math.ceil(sites / (os.cpu_count() or 1)))
        return self.clients_per_task


def call_id_of(request: Message) -> str:
    """The call's id: the one a signed request is bound to, else a fresh random one."""
    bound = getattr(request, "call_id", None)
    return bound if isinstance(bound, str) and bound else uuid.uuid4().hex


def _wait_for_reply(
    session: "SiteSession", call_id: str, operation: str, transport: TransportConfig
) -> bytes:
    """The reply's bytes, as soon as they are there; raises when the site fails, dies or times out."""
    mailbox = session.mailbox
    deadline = time.monotonic() + transport.round_timeout_s
    while True:
        if mailbox.has(call_id, RESPONSE):
            return mailbox.read(call_id, RESPONSE)
        if mailbox.has(call_id, FAILURE):
            raise SiteFailedError(f"site {session.site}: {mailbox.failure(call_id)}")
        problem = session.problem()
        if problem is not None:
            raise SiteUnreachableError(f"site {session.site} is unreachable: {problem}")
        if time.monotonic() > deadline:
            raise SiteCallError(
                f"site {session.site} did not finish {operation} within {transport.round_timeout_s:g} s "
                "(it is alive but slow: raise transport.round_timeout_s)"
            )
        time.sleep(transport.poll_interval_s)


class SiteFailedError(FedflowError):
    """The site answered that it could not do the call (its reason's type only; details in its log)."""


@task(name="site-remote-call", cache_policy=NO_CACHE, task_run_name="{label}")
def remote_site_call(
    session: "SiteSession", request: Message, transport: TransportConfig, label: str
) -> Message:
    """Leave one request in the site's session, wait for its reply, and return it validated."""
    problem = session.problem(waiting=False)
    if problem is not None:  # a site known to be down costs nothing more this round
        raise SiteUnreachableError(f"site {session.site} is unreachable: {problem}")
    call_id = call_id_of(request)
    operation = str(getattr(request, "operation", None) or request.kind)
    answered = False
    key, public = new_reply_key()  # one-time: only this call's reply opens with it
    left = ExchangeRequest(reply_key=public, request=request.model_dump_json())
    session.mailbox.write(call_id, REQUEST, left.model_dump_json().encode())
    try:
        sealed = _wait_for_reply(session, call_id, operation, transport)
        reply = reply_from_json(
            request, open_sealed(sealed, key=key, context=session.mailbox.address(call_id))
        )
        answered = True
        return reply
    finally:
        if not (answered and transport.keep_messages):
            session.mailbox.remove(call_id)
