"""The site flow: one warm site process per federation (`fedflow site serve`).

The coordinator starts one run of the site's deployment per federation (a *session*). The run
builds the site's agent once — its data read and validated once —, shows it is alive with a
heartbeat in its own prefix of the exchange, and answers every request the coordinator leaves
in its session's mailbox as a Prefect task of the run (so the Prefect UI shows each site's work),
until the coordinator closes the session or nobody calls for IDLE_TIMEOUT_S. The data path,
keys, state folder, policy and exchange are the site's own (`flows.served_site`), never the
coordinator's; the run's parameters name only the session.
"""

import logging
import threading
import time

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from fedflow.errors import FedflowError
from fedflow.messages import Message, RefusalReply, request_from_json
from fedflow.site_agent import SiteAgent
from fedflow.site_policy import PolicyRefusal
from flows.exchange import REQUEST, RESPONSE, Exchange, Heartbeat, Mailbox
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
def answer_call(agent: SiteAgent, mailbox: Mailbox, call_id: str, request: Message, label: str) -> None:
    """Answer one call of the session: let the agent answer its request, leave the reply.

    A failure is reported by its type only (the coordinator reads it); the full error stays in
    the site's own log. A policy refusal is an answer: its category is all the coordinator learns.
    """
    try:
        reply: Message = agent.handle(request)
    except PolicyRefusal as refusal:
        get_run_logger().warning("site %s refused %s: %s", agent.name, label, refusal)
        reply = RefusalReply(category=str(refusal)[:200])
    except Exception as error:
        _LOCAL_LOG.exception("site %s: %s failed", agent.name, label)
        mailbox.fail(call_id, f"{label} failed at the site ({type(error).__name__}); see its own log")
        return
    mailbox.write(call_id, RESPONSE, reply.model_dump_json().encode())


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


def _request(mailbox: Mailbox, call_id: str) -> Message | None:
    """The call's request, or None after failing the call when it is oversized or not a request."""
    try:
        return request_from_json(mailbox.read(call_id, REQUEST))
    except (FedflowError, ValueError) as error:  # ExchangeError, pydantic's ValidationError
        _LOCAL_LOG.warning("site %s: call %s refused unread: %s", mailbox.site, call_id, error)
        mailbox.fail(call_id, f"the request is not one this site reads ({type(error).__name__})")
        return None


@flow(name=SITE_FLOW_NAME, persist_result=False, log_prints=True)
def site_session(session: str, exchange_url: str | None = None) -> int:
    """Serve one federation's calls until the coordinator closes the session; return how many.

    `exchange_url` is the coordinator's view of the exchange, shown in the run's parameters; the
    site reads and writes only its own (`--exchange`), under its own prefix. Nothing else is a
    parameter: whoever can start runs on the Prefect API chooses only the session's name.
    """
    from flows.site_agents import served_agent

    served, exchange = _served()
    mailbox = exchange.mailbox(served.site, session)
    agent = served_agent()
    logger = get_run_logger()
    logger.info("site %s: session %s open", served.site, session)
    answered, last_call = 0, time.monotonic()
    with _Heartbeat(mailbox):
        while not mailbox.closed():
            pending = mailbox.pending()
            for call_id in pending:
                request = _request(mailbox, call_id)
                if request is not None:
                    answer_call(agent, mailbox, call_id, request, _label(request))
                    answered += 1
            if pending:
                last_call = time.monotonic()
            elif time.monotonic() - last_call > IDLE_TIMEOUT_S:
                logger.warning(
                    "site %s: no call for %.0f s; session %s ends", served.site, IDLE_TIMEOUT_S, session
                )
                break
            time.sleep(POLL_S)
    mailbox.clear(keep_calls=True)
    logger.info("site %s: session %s closed after %d call(s)", served.site, session, answered)
    return answered


def serve_site(domain: str, site: str, *, limit: int = 4) -> None:
    """Serve this process's site deployment until interrupted (runs inherit the environment).

    Served (not a work-pool deployment): the flow that runs is the one in this process, with no
    job variables or pull steps anyone on the Prefect API could set (deployments/README.md).
    """
    from prefect.types.entrypoint import EntrypointType

    site_session.serve(
        name=site_deployment_name(domain, site),
        tags=["fedflow", f"domain:{domain}", f"site:{site}"],
        limit=limit,
        entrypoint_type=EntrypointType.MODULE_PATH,
        print_starting_message=False,
    )
