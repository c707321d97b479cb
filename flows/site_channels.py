"""Site channels over Prefect: site tasks in this process (simulation) or site deployments (cross-silo).

Simulation submits one Prefect task per site call (or, with many sites, one per batch of sites),
each handing the typed request to the site's agent in this process. Cross-silo submits one
coordinator task per site call, which leaves the request as JSON in the site's session of the
exchange (its warm process, started once per federation), waits while the site is alive, and
reads and validates the reply. Either
way the driver gets a handle per site whose `.result()` is the typed reply.
"""

from collections.abc import Mapping
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture

from fedflow.federation.channel import ReplyHandle, expect
from fedflow.messages import Message, PrepareReply, PrepareRequest
from flows.exchange import Exchange
from flows.site_agents import SiteLocation, domain_named, simulated_agent
from flows.site_sessions import SiteSession
from flows.transport import TransportConfig, remote_site_call
from validation import validate_frames


def _label(request: Message, site: str) -> str:
    kind = str(getattr(request, "operation", request.kind))  # a signed request is named for its body
    round_number = getattr(request, "round", None) or None  # (round 0: a signed prepare or audit)
    return f"{kind}-{site}" + (f"-round-{round_number}" if round_number is not None else "")


@task(name="site-call", cache_policy=NO_CACHE, task_run_name="{label}")
def site_call(domain: str, site: str, request: Message, location: SiteLocation, label: str) -> Message:
    """One site's agent answers one request (simulation)."""
    return expect(simulated_agent(domain, site, location).handle(request), request)


def _prepare_many(domain: str, requests: Mapping[str, Message], location: SiteLocation) -> dict[str, Message]:
    """Prepare many simulated sites with one GX validation of all their rows (their rows are here anyway)."""
    agents = {site: simulated_agent(domain, site, location) for site in requests}
    out: dict[str, Message] = {}
    frames: dict[str, pd.DataFrame] = {}
    for site, agent in agents.items():
        rows = agent.read_rows()
        if isinstance(rows, PrepareReply):
            out[site] = rows
        else:
            frames[site] = rows
    loaded = domain_named(domain)
    summaries = validate_frames(frames, loaded.expectations, suite_name=domain)
    for site, frame in frames.items():
        request = requests[site]
        assert isinstance(request, PrepareRequest)
        out[site] = agents[site].finish_preparation(frame, summaries[site], request)
    return {site: out[site] for site in requests}


@task(name="site-batch", cache_policy=NO_CACHE, task_run_name="{label}")
def site_batch(
    domain: str, requests: dict[str, Message], location: SiteLocation, label: str
) -> dict[str, tuple[bool, Any]]:
    """Simulation: many sites' calls in turn; each site's reply or its exception."""
    if all(isinstance(r, PrepareRequest) for r in requests.values()):
        return {site: (True, reply) for site, reply in _prepare_many(domain, requests, location).items()}
    out: dict[str, tuple[bool, Any]] = {}
    for site, request in requests.items():
        try:
            out[site] = (True, expect(simulated_agent(domain, site, location).handle(request), request))
        except Exception as error:  # one failing site must not fail its batch
            out[site] = (False, error)
    return out


class BatchedReply:
    """One site's share of a batch task: `.result()` gives its reply or raises its exception."""

    def __init__(self, batch: PrefectFuture[dict[str, tuple[bool, Any]]], site: str) -> None:
        self.batch = batch
        self.site = site

    def result(self) -> Message:
        """The site's reply (waits for the batch)."""
        ok, value = self.batch.result()[self.site]
        if not ok:
            raise value
        assert isinstance(value, Message)
        return value


class SimulationChannel:
    """Every site a Prefect task of this flow, answered by its agent in this process."""

    def __init__(self, domain: str, location: SiteLocation, transport: TransportConfig) -> None:
        self.domain = domain
        self.location = location
        self.transport = transport

    def send(self, requests: Mapping[str, Message]) -> dict[str, ReplyHandle]:
        """A handle per site; many sites share batch tasks (`transport.clients_per_task`)."""
        size = self.transport.sites_per_task(len(requests))
        if size == 1:
            return {
                site: site_call.submit(self.domain, site, request, self.location, _label(request, site))
                for site, request in requests.items()
            }
        sites = list(requests)
        handles: dict[str, ReplyHandle] = {}
        for start in range(0, len(sites), size):
            chunk = sites[start : start + size]
            label = _label(requests[chunk[0]], "batch-" + chunk[0])
            batch = site_batch.submit(self.domain, {s: requests[s] for s in chunk}, self.location, label)
            handles.update({site: BatchedReply(batch, site) for site in chunk})
        return handles


class DeploymentChannel:
    """Every site its own served deployment (`fedflow site serve`): one warm session per site and
    federation, reached through the site's prefix of the exchange (`flows.site_sessions`).

    A site whose session stopped fails its calls at once ("unreachable") for the rest of the
    round; a fresh session is asked for in the background at most every `start_timeout_s`, and
    the site answers again once it beats (the driver lets it rejoin).
    """

    def __init__(self, domain: str, transport: TransportConfig) -> None:
        self.domain = domain
        self.transport = transport
        self.exchange = Exchange(transport.exchange_url)
        self.sessions: dict[str, SiteSession] = {}

    def _new_session(self, site: str, federation: str, *, rejoining: bool = False) -> SiteSession:
        session = SiteSession(
            domain=self.domain,
            site=site,
            exchange=self.exchange,
            transport=self.transport,
            rejoining=rejoining,
            federation=federation,
        )
        return session.start()

    def _session(self, site: str, request: Message) -> SiteSession:
        federation = str(getattr(request, "federation_id", ""))
        session = self.sessions.get(site)
        if session is None:
            self.sessions[site] = self._new_session(site, federation)
        elif session.problem(waiting=False) is not None and (
            self.exchange.standby_sessions(site) or session.age() > self.transport.start_timeout_s
        ):  # stopped: a restarted site's standby is taken at once
            session.close("the site stopped answering; a fresh session replaces this one")
            self.sessions[site] = self._new_session(site, federation, rejoining=True)
        return self.sessions[site]

    def send(self, requests: Mapping[str, Message]) -> dict[str, ReplyHandle]:
        """A coordinator task per site call, into the site's session."""
        return {
            site: remote_site_call.submit(
                self._session(site, request), request, self.transport, _label(request, site)
            )
            for site, request in requests.items()
        }

    def close(self, reason: str) -> None:
        """End every site's session (their processes finish their runs)."""
        for session in self.sessions.values():
            session.close(reason)
