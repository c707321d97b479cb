"""Where the sites run (`TransportConfig`), and the coordinator's call to a site's deployment.

A cross-silo call writes the request to the exchange, starts the site's deployment with
`run_deployment` (a subflow of the federation's run), waits at most the round timeout, and
reads and validates the reply against the type the request asks for.
"""

import math
import os
import uuid
from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.states import Cancelling
from pydantic import BaseModel, ConfigDict, Field, field_validator

from fedflow.errors import FedflowError
from fedflow.messages import Message, reply_from_json
from flows.exchange import REQUEST, RESPONSE, Exchange
from flows.site_flow import SITE_FLOW_NAME, site_deployment_name

# 'auto' batching: up to this many sites, each gets its own tasks (a clear per-site view in
# Prefect); more sites are split over one task per core. Threads beyond the cores only contend
# and every batch runs its own GX validation (side by side on two cores, 10 clients x 20
# rounds: 17.9 s with ten tasks, 15.5-16.2 s with four, 14.1-14.2 s with two; BENCHMARKS.md).
SITES_WITH_OWN_TASKS = 4


class SiteCallError(FedflowError):
    """A site's deployment run timed out, failed, or is not deployed."""


class TransportConfig(BaseModel):
    """Where the sites run. It changes how they are reached, never what is computed."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["simulation", "cross-silo"] = Field(
        default="simulation",
        description="simulation: every site is a task of this flow; cross-silo: each site serves its "
        "own deployment (`fedflow site serve`).",
    )
    round_timeout_s: float = Field(
        default=600.0, gt=0, description="Cross-silo: a site call not finished by then is dropped."
    )
    exchange_url: str | None = Field(
        default=None,
        description="Cross-silo: fsspec URL of the exchange (default FEDFLOW_EXCHANGE_URL or "
        ".fedflow/exchange).",
    )
    poll_interval_s: float = Field(default=1.0, gt=0, description="Cross-silo: how often to poll a site run.")
    keep_messages: bool = Field(
        default=False,
        description="Cross-silo: keep each call's request and reply in the exchange (debugging).",
    )
    clients_per_task: int | Literal["auto"] = Field(
        default="auto",
        description="Simulation: sites handled by one Prefect task (fewer, larger tasks, and one GX "
        "validation per batch, for many simulated clients). 'auto': one site per task up to "
        f"{SITES_WITH_OWN_TASKS} sites, else the sites split over one task per CPU core. Same results.",
    )

    @field_validator("clients_per_task")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("clients_per_task must be at least 1 (or 'auto')")
        return value

    def sites_per_task(self, sites: int) -> int:
        """How many of `sites` one simulation task handles."""
        if self.clients_per_task == "auto":
            if sites <= SITES_WITH_OWN_TASKS:
                return 1
            return math.ceil(sites / (os.cpu_count() or 1))
        return self.clients_per_task


def _request_json(request: Message) -> bytes:
    return request.model_dump_json().encode()


@task(name="site-remote-call", cache_policy=NO_CACHE, task_run_name="{label}")
def remote_site_call(
    domain: str, site: str, request: Message, transport: TransportConfig, label: str
) -> Message:
    """Run one request on a site's deployment and return its validated reply."""
    exchange = Exchange(transport.exchange_url)
    call_id = uuid.uuid4().hex
    exchange.write(call_id, REQUEST, _request_json(request))
    name = f"{SITE_FLOW_NAME}/{site_deployment_name(domain, site)}"
    operation = str(request.kind)
    try:
        run = run_deployment(
            name,
            parameters={"operation": operation, "call_id": call_id, "exchange_url": exchange.url},
            timeout=transport.round_timeout_s,
            poll_interval=transport.poll_interval_s,
            as_subflow=True,
        )
    except Exception as error:
        raise SiteCallError(
            f"site {site}: cannot start deployment {name} ({type(error).__name__})"
        ) from error
    state = run.state
    if state is None or not state.is_final():
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run.id, Cancelling(message="fedflow: the round timed out"), force=True)
        raise SiteCallError(f"site {site} did not finish {operation} within {transport.round_timeout_s:g} s")
    if not state.is_completed():
        raise SiteCallError(f"site {site}: its {operation} run ended {state.name}; see the site's own log")
    try:
        return reply_from_json(request, exchange.read(call_id, RESPONSE))
    finally:
        if not transport.keep_messages:
            exchange.remove(call_id)
