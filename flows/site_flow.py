"""The site flow: one warm site process per federation (`fedflow site serve`).

Each federation talks to one run of the site's deployment (a *session*). The site keeps one
*standby* session ready: started by `fedflow site serve` itself (and the next one when a claimed
standby's federation ends), it builds the site's agent — data read and validated once,
again only when the file changes — and beats in its own prefix of the exchange until a
coordinator claims it for its federation. (A coordinator that finds no standby starts a session
itself.) The session answers every request the coordinator leaves in its mailbox as a Prefect task
of the run (so the Prefect UI shows each site's work, the run named for the federation), until
the coordinator closes the session or nobody calls for IDLE_TIMEOUT_S. The data path,
keys, state folder, policy and exchange are the site's own (`flows.served_site`), never the
coordinator's; the run's parameters name only the session.
"""

import logging
import threading
import time
import uuid
from dataclasses import dataclass

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from fedflow.errors import FedflowError
from fedflow.messages import Message, RefusalReply, request_from_json
from fedflow.reply_sealing import seal
from fedflow.site_agent import SiteAgent
from fedflow.site_policy import PolicyRefusal
from flows.exchange import (
    REQUEST,
    RESPONSE,
    STANDBY,
    Claim,
    Claimed,
    Exchange,
    ExchangeRequest,
    Heartbeat,
    Mailbox,
)
from flows.served_site import ServedSite

SITE_FLOW_NAME = "fedflow-site"
HEARTBEAT_S = 1.0  # how often a session shows it is alive
POLL_S = 0.05  # how often a session looks for requests
IDLE_TIMEOUT_S = 3600.0  # a session nobody calls for this long ends (its coordinator is gone)
_LOCAL_LOG = logging.getLogger("fedflow.site")


def site_deployment_name(domain: str, site: str) -> str:
    """The deployment a site serves for a domain: `<domain>-<site>`."""
    return f"{domain}-{site}"


def _label(request: Message) -> str:
    operation = str(getattr(request, "operation", None) or request.kind)
    round_number = getattr(request, "round", 0)
    return operation + (f"-round-{round_number}" if round_number else "")


@task(name="site-answer", cache_policy=NO_CACHE, task_run_name="{label}")
def answer_call(agent: SiteAgent, mailbox: Mailbox, call_id: str, call: "Call", label: str) -> None:
    """Answer one call of the session: let the agent answer its request, leave the reply sealed.

    A failure is reported by its type only (the coordinator reads it); the full error stays in
    the site's own log. A policy refusal is an answer: its category is all the coordinator learns.
    """
    try:
        reply: Message = agent.handle(call.request)
    except PolicyRefusal as refusal:
        get_run_logger().warning("site %s refused %s: %s", agent.name, label, refusal)
        reply = RefusalReply(category=str(refusal)[:200])
    except Exception as error:
        _LOCAL_LOG.exception("site %s: %s failed", agent.name, label)
        mailbox.fail(call_id, f"{label} failed at the site ({type(error).__name__}); see its own log")
        return
    # Sealed to the call's one-time key: readers of the exchange see ciphertext only.
    sealed = seal(
        reply.model_dump_json().encode(), recipient=call.reply_key, context=mailbox.address(call_id)
    )
    mailbox.write(call_id, RESPONSE, sealed)


class _Heartbeat:
    """Raises a counter in the session's `alive.json` every HEARTBEAT_S while the session runs."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fedflow-site-heartbeat", daemon=True)

    def _run(self) -> None:
        beat = 0
        while not self.stopped.is_set():
            try:
                self.mailbox.beat(Heartbeat(beat=beat, interval_s=HEARTBEAT_S))
            except OSError:  # the exchange is briefly unreachable: the coordinator sees a late beat
                _LOCAL_LOG.warning("site %s: heartbeat not written", self.mailbox.site)
            beat += 1
            self.stopped.wait(HEARTBEAT_S)

    def __enter__(self) -> "_Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)


def _served() -> tuple[ServedSite, Exchange]:
    served = ServedSite.from_environment()
    if served is None or not served.exchange_url:
        raise FedflowError("a served site needs its own exchange (FEDFLOW_EXCHANGE_URL, `--exchange`)")
    return served, Exchange(served.exchange_url)


@dataclass(frozen=True)
class Call:
    """A request as the site read it, and the one-time key its reply is sealed to."""

    request: Message
    reply_key: bytes


def _request(mailbox: Mailbox, call_id: str) -> Call | None:
    """The call, or None after failing it when it is oversized or not a request."""
    try:
        left = ExchangeRequest.model_validate_json(mailbox.read(call_id, REQUEST))
        return Call(request=request_from_json(left.request.encode()), reply_key=left.reply_key)
    except (FedflowError, ValueError) as error:  # ExchangeError, pydantic's ValidationError
        _LOCAL_LOG.warning("site %s: call %s refused unread: %s", mailbox.site, call_id, error)
        mailbox.fail(call_id, f"the request is not one this site reads ({type(error).__name__})")
        return None


@task(name="site-warm-up", cache_policy=NO_CACHE)
def warm_up(site: str) -> None:
    """Run what a session's first call would otherwise pay for: Prefect's task engine in this
    process, torch's first forward and backward pass and its first optimiser (a throwaway model,
    no site data)."""
    import torch

    layer = torch.nn.Linear(4, 2)
    layer(torch.zeros(8, 4)).sum().backward()
    torch.optim.SGD(layer.parameters(), lr=0.0).step()  # the first optimiser imports torch._dynamo (~1 s)
    _LOCAL_LOG.info("site %s: standby session warm", site)


def _wait_for_claim(mailbox: Mailbox, agent: SiteAgent) -> Claim | None:
    """A standby session: warm the agent (rows read and validated), then wait for a coordinator's
    claim; None when the site's serve process asks it to stop (`close`)."""
    agent.validated_rows()
    warm_up(mailbox.site)
    while not mailbox.closed():
        claim = mailbox.read_claim()
        if claim is not None:
            return claim
        time.sleep(POLL_S)
    return None


def _take(claim: Claim, mailbox: Mailbox) -> None:
    """Accept the claim and name the run for the federation in the Prefect UI."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    run_id = str(flow_run.id) if flow_run.id else None
    mailbox.accept(Claimed(nonce=claim.nonce, flow_run_id=run_id))
    try:
        with get_client(sync_client=True) as client:
            if run_id:
                client.update_flow_run(run_id, name=f"{mailbox.site}: {claim.federation}")  # type: ignore[arg-type]
    except Exception:  # the UI name is a convenience: the session goes on
        _LOCAL_LOG.warning("site %s: could not name this session's run", mailbox.site)


def start_standby(domain: str, site: str) -> None:
    """Ask for the next standby session of this site's deployment (it warms up before any call)."""
    from prefect.deployments import run_deployment

    run_deployment(
        f"{SITE_FLOW_NAME}/{site_deployment_name(domain, site)}",
        parameters={"session": f"{STANDBY}{uuid.uuid4().hex}"},
        timeout=0,
        as_subflow=False,
    )


def _serve_calls(mailbox: Mailbox, agent: SiteAgent) -> int:
    """Answer the session's calls until the coordinator closes it (or nobody calls for long)."""
    answered, last_call = 0, time.monotonic()
    while not mailbox.closed():
        pending = mailbox.pending()
        for call_id in pending:
            call = _request(mailbox, call_id)
            if call is not None:
                answer_call(agent, mailbox, call_id, call, _label(call.request))
                answered += 1
        if pending:
            last_call = time.monotonic()
        elif time.monotonic() - last_call > IDLE_TIMEOUT_S:
            _LOCAL_LOG.warning("site %s: no call for %.0f s; session ends", mailbox.site, IDLE_TIMEOUT_S)
            break
        time.sleep(POLL_S)
    return answered


@flow(name=SITE_FLOW_NAME, persist_result=False, log_prints=True)
def site_session(session: str, exchange_url: str | None = None) -> int:
    """Serve one federation's calls until the coordinator closes the session; return how many.

    A `standby-…` session (the site starts one ahead of time) warms up and waits until a
    coordinator claims it; any other session was started by a coordinator for its federation.
    `exchange_url` is the coordinator's view of the exchange, shown in the run's parameters; the
    site reads and writes only its own (`--exchange`), under its own prefix. Nothing else is a
    parameter: whoever can start runs on the Prefect API chooses only the session's name.
    """
    from flows.site_agents import served_agent

    served, exchange = _served()
    mailbox = exchange.mailbox(served.site, session)
    agent = served_agent()
    logger = get_run_logger()
    with _Heartbeat(mailbox):
        if session.startswith(STANDBY):
            claim = _wait_for_claim(mailbox, agent)
            if claim is None:
                mailbox.clear()
                return 0
            _take(claim, mailbox)
            logger.info("site %s: session for %s", served.site, claim.federation)
        else:
            logger.info("site %s: session %s open", served.site, session)
        answered = _serve_calls(mailbox, agent)
    mailbox.clear(keep_calls=True)
    if session.startswith(STANDBY):
        # The next standby warms up now, not while this federation ran (it would take its CPU).
        try:
            start_standby(served.domain or "", served.site)
        except Exception:  # the next coordinator starts a session itself
            _LOCAL_LOG.warning("site %s: no next standby session", served.site)
    logger.info("site %s: session %s closed after %d call(s)", served.site, session, answered)
    return answered


def _first_standby(domain: str, site: str) -> None:
    """Once the deployment is registered, ask for the site's first standby session."""
    from prefect.client.orchestration import get_client

    name = f"{SITE_FLOW_NAME}/{site_deployment_name(domain, site)}"
    served = ServedSite.from_environment()
    if served is not None and served.exchange_url:  # standbys of an earlier process of this site are gone
        Exchange(served.exchange_url).remove_standbys(site)
    for _ in range(600):
        try:
            with get_client(sync_client=True) as client:
                client.read_deployment_by_name(name)
            start_standby(domain, site)
            return
        except Exception:  # not registered yet
            time.sleep(0.5)
    _LOCAL_LOG.warning("site %s: no standby session (the deployment was never registered)", site)


def serve_site(domain: str, site: str, *, limit: int = 4) -> None:
    """Serve this process's site deployment until interrupted (runs inherit the environment).

    Served (not a work-pool deployment): the flow that runs is the one in this process, with no
    job variables or pull steps anyone on the Prefect API could set (deployments/README.md).
    """
    from prefect.types.entrypoint import EntrypointType

    threading.Thread(target=_first_standby, args=(domain, site), name="fedflow-standby", daemon=True).start()
    site_session.serve(
        name=site_deployment_name(domain, site),
        tags=["fedflow", f"domain:{domain}", f"site:{site}"],
        limit=limit,
        entrypoint_type=EntrypointType.MODULE_PATH,
        print_starting_message=False,
    )
