"""The site flow: what a site serves in cross-silo mode (`fedflow site serve`).

Each run executes one site operation — the same task functions the simulation runs — on the
request the coordinator left in the exchange, and leaves the reply there. The site's data
path, keys and state come from the site's own environment (`FEDFLOW_SITE_DATA`,
`FEDFLOW_KEYS_DIR`, `FEDFLOW_STATE_DIR`), never from the coordinator.
"""

import os

from prefect import flow

from flows.site_calls import execute_site_call

SITE_FLOW_NAME = "fedflow-site"


def site_deployment_name(domain: str, site: str) -> str:
    """The deployment a site serves for a domain: `<domain>-<site>`."""
    return f"{domain}-{site}"


@flow(name=SITE_FLOW_NAME, persist_result=False, log_prints=True)
def site_step(operation: str, call_id: str, exchange_url: str | None = None) -> str:
    """Run one site operation on a request from the exchange; write the reply; return the call id."""
    # Only importable names here: `serve` sends this function to its run process by value.
    execute_site_call(operation, call_id, os.environ.get("FEDFLOW_EXCHANGE_URL") or exchange_url)
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
