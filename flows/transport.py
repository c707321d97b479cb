"""How the coordinator reaches its sites: Prefect tasks in one process, or deployments per site.

Simulation submits the site tasks themselves. Cross-silo submits one coordinator task per site
call, which writes the request to the exchange, starts the site's deployment with
`run_deployment` (a subflow of the federation's run), waits at most the round timeout, and
reads and validates the reply. Either way the coordinator gets a future of the same value.
"""

import math
import os
import uuid
from typing import Any, Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.futures import PrefectFuture
from prefect.states import Cancelling
from pydantic import BaseModel, ConfigDict, Field, field_validator

from fedflow.errors import FedflowError
from flows.exchange import Exchange
from flows.site_calls import REQUEST, RESPONSE, SITE_OPERATIONS, decode_result, encode_arguments, operation_of
from flows.site_flow import SITE_FLOW_NAME, site_deployment_name
from flows.site_tasks import prepare_sites

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


@task(name="site-call", cache_policy=NO_CACHE, task_run_name="{operation}-{site}")
def remote_site_call(
    operation: str, domain: str, site: str, request: bytes, transport: TransportConfig
) -> Any:
    """Run one operation on a site's deployment and return its validated reply."""
    exchange = Exchange(transport.exchange_url)
    call_id = uuid.uuid4().hex
    exchange.write(call_id, REQUEST, request)
    name = f"{SITE_FLOW_NAME}/{site_deployment_name(domain, site)}"
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
        return decode_result(operation, exchange.read(call_id, RESPONSE))
    finally:
        if not transport.keep_messages:
            exchange.remove(call_id)


@task(name="site-batch", cache_policy=NO_CACHE, task_run_name="{operation}-batch-{first_site}")
def run_site_batch(
    operation: str, domain: str, first_site: str, calls: list[tuple[str, dict[str, Any]]]
) -> dict[str, tuple[bool, Any]]:
    """Simulation: one site operation for many sites in turn; each site's value or its exception."""
    if operation == "prepare":
        arguments = calls[0][1]
        return {
            site: (True, preparation)
            for site, preparation in prepare_sites(domain, [site for site, _ in calls], **arguments).items()
        }
    out: dict[str, tuple[bool, Any]] = {}
    for site, arguments in calls:
        try:
            out[site] = (True, SITE_OPERATIONS[operation].fn(domain, site, **arguments))
        except Exception as error:  # one failing site must not fail its batch
            out[site] = (False, error)
    return out


class BatchedSiteFuture:
    """One site's share of a batch task: `.result()` gives its value or raises its exception."""

    def __init__(self, batch: PrefectFuture[dict[str, tuple[bool, Any]]], site: str) -> None:
        self.batch = batch
        self.site = site

    def result(self) -> Any:
        """The site's value (waits for the batch)."""
        ok, value = self.batch.result()[self.site]
        if not ok:
            raise value
        return value


class SiteTransport:
    """Submits site tasks locally or to the sites' deployments."""

    def __init__(self, config: TransportConfig | None = None) -> None:
        self.config = config or TransportConfig()

    @property
    def cross_silo(self) -> bool:
        """True when sites run their own deployments."""
        return self.config.mode == "cross-silo"

    def map(
        self,
        site_task: Any,
        domain: str,
        sites: list[str],
        per_site: dict[str, dict[str, Any]] | None = None,
        **arguments: Any,
    ) -> dict[str, Any]:
        """Submit a site task for every site (common `arguments`, plus each site's `per_site` ones).

        Returns a future per site; in simulation with more than one site per task, sites share batch tasks.
        """
        per_site = per_site or {}
        size = self.config.sites_per_task(len(sites))
        if self.cross_silo or size == 1:
            return {
                site: self.submit(site_task, domain, site, **arguments, **per_site.get(site, {}))
                for site in sites
            }
        operation = operation_of(site_task)
        futures: dict[str, Any] = {}
        for start in range(0, len(sites), size):
            chunk = sites[start : start + size]
            calls = [(site, {**arguments, **per_site.get(site, {})}) for site in chunk]
            batch = run_site_batch.submit(operation, domain, chunk[0], calls)
            futures.update({site: BatchedSiteFuture(batch, site) for site in chunk})
        return futures

    def submit(self, site_task: Any, domain: str, site: str, **arguments: Any) -> PrefectFuture[Any]:
        """A future of the site task's value, however the site is reached."""
        if not self.cross_silo:
            return site_task.submit(domain, site, **arguments)  # type: ignore[no-any-return]
        operation = operation_of(site_task)
        request = encode_arguments(operation, {"domain_name": domain, "site": site, **arguments})
        return remote_site_call.submit(operation, domain, site, request, self.config)
