"""The site flow: what a site serves in cross-silo mode (`fedflow site serve`).

Each run answers one request the coordinator left in the exchange — with the same site agent
the simulation uses — and leaves the reply there. The site's data path, keys, state folder and
exchange are the site's own (`flows.served_site`), never the coordinator's.
"""

import logging

from prefect import flow, get_run_logger

from fedflow.messages import Message, RefusalReply, request_from_json
from fedflow.site_policy import PolicyRefusal
from flows.exchange import REQUEST, RESPONSE, Exchange
from flows.served_site import ServedSite

SITE_FLOW_NAME = "fedflow-site"


def site_deployment_name(domain: str, site: str) -> str:
    """The deployment a site serves for a domain: `<domain>-<site>`."""
    return f"{domain}-{site}"


def answer_site_call(operation: str, call_id: str) -> None:
    """At the site: read a request from the exchange, let the site's agent answer, write the reply.

    A failure is reported by its type only: the Prefect API keeps run messages, and the
    coordinator reads it. The full error stays in the site's own log.
    """
    from flows.site_agents import served_agent

    served = ServedSite.from_environment()
    if served is None or not served.exchange_url:
        raise ValueError("a served site needs its own exchange (FEDFLOW_EXCHANGE_URL, `--exchange`)")
    exchange = Exchange(served.exchange_url)
    request = request_from_json(exchange.read(call_id, REQUEST))
    if request.kind != operation:
        raise ValueError(f"the request of call {call_id} is a {request.kind!r}, not a {operation!r}")
    get_run_logger().info("site %s: %s (call %s)", served.site, operation, call_id)
    try:
        reply: Message = served_agent().handle(request)
    except PolicyRefusal as refusal:
        # The rule that refused is all the coordinator learns; the call itself completed.
        get_run_logger().warning("site %s refused %s: %s", served.site, operation, refusal)
        reply = RefusalReply(category=str(refusal))
    except Exception as error:
        logging.getLogger("fedflow.site").exception("site %s: %s failed", served.site, operation)
        raise RuntimeError(
            f"{operation} failed at the site ({type(error).__name__}); see its own log"
        ) from None
    exchange.write(call_id, RESPONSE, reply.model_dump_json().encode())


@flow(name=SITE_FLOW_NAME, persist_result=False, log_prints=True)
def site_step(operation: str, call_id: str, exchange_url: str | None = None) -> str:
    """Answer one request from the exchange; write the reply; return the call id.

    `exchange_url` is the coordinator's view of the exchange, shown in the run's parameters; the
    site reads and writes only its own (`--exchange`).
    """
    answer_site_call(operation, call_id)
    return call_id


def serve_site(domain: str, site: str, *, limit: int = 4) -> None:
    """Serve this process's site deployment until interrupted (runs inherit the environment)."""
    from prefect.types.entrypoint import EntrypointType

    site_step.serve(
        name=site_deployment_name(domain, site),
        tags=["fedflow", f"domain:{domain}", f"site:{site}"],
        limit=limit,
        entrypoint_type=EntrypointType.MODULE_PATH,
        print_starting_message=False,
    )
