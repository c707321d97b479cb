"""One federation, one name in both UIs, and a link each way between its MLflow run and Prefect flow run.

Prefect names a flow run before the flow knows what it runs (`space-pug`), and `prefect.tags()`
only tags runs created inside it, so the running flow run is renamed and tagged through the API
once the config is resolved. The MLflow run gets the flow run's id (and its page, when a Prefect
UI serves it) as tags and in its description; the flow run gets a link artifact to the MLflow run.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass

from prefect.artifacts import create_link_artifact
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.settings import PREFECT_API_URL
from prefect.utilities.urls import url_for

from fedflow.config import FederationConfig
from fedflow.run_names import flow_run_tags, privacy_kind
from flows import api_warmup
from flows.tracking import FederationTracker
from flows.ui_links import mlflow_run_url, mlflow_ui_base, prefect_flow_run_page, prefect_ui_base

PREFECT_FLOW_RUN_ID_TAG = "fedflow.prefect_flow_run_id"
PREFECT_FLOW_RUN_URL_TAG = "fedflow.prefect_flow_run_url"
MLFLOW_DESCRIPTION_TAG = "mlflow.note.content"  # what the MLflow UI shows as the run's description


def name_flow_run(name: str, tags: Mapping[str, str]) -> str | None:
    """Rename the running flow run to `name` and add the run's tags; its id (None outside a flow run)."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None
    flow_run = context.flow_run
    merged = sorted(set(flow_run.tags) | set(flow_run_tags(dict(tags))))  # a deployment's tags stay
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.id, name=name, tags=merged)
    flow_run.name, flow_run.tags = name, merged  # what the engine's own renaming does too
    return str(flow_run.id)


def prefect_flow_run_url(flow_run_id: str) -> str | None:
    """The flow run's page in the Prefect UI (`PREFECT_UI_URL`, else derived from the API's address).

    On fedflow's temporary API (`fedflow run` without PREFECT_API_URL), which has no UI and stops
    with the run, the page is where `fedflow ui --prefect` serves the same PREFECT_HOME database.
    None when no UI is known (Prefect's in-process test server).
    """
    if api_warmup.serves_api(PREFECT_API_URL.value()):
        return prefect_flow_run_page(prefect_ui_base(), flow_run_id)
    return url_for("flow-run", obj_id=flow_run_id)


def flow_run_artifact_key(domain: str) -> str:
    """The link artifact's key (Prefect keys: lowercase letters, digits and dashes)."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{domain.lower()}-mlflow-run").strip("-")


@dataclass(frozen=True)
class RunLinks:
    """What links the two runs: the federation's name and config, and both runs' ids."""

    federation_id: str
    domain: str
    config: FederationConfig
    tracker: FederationTracker
    flow_run_id: str | None


def _description(links: RunLinks, prefect_url: str | None) -> str:
    """The MLflow run's description: what the run is and where its Prefect flow run is."""
    config = links.config
    options = ", ".join(f"{k}={v}" for k, v in config.strategy.resolved_options().items())
    lines = [
        f"**{links.domain}** federation `{links.federation_id}`: strategy {config.strategy.name}"
        + (f" ({options})" if options else "")
        + f", {config.rounds} round{'s' if config.rounds != 1 else ''}, privacy {privacy_kind(config)}"
        + ", secure aggregation "
        + ("on" if config.secure_aggregation.enabled else "off")
        + f", codec {config.compression.codec}.",
    ]
    if prefect_url is not None and api_warmup.serves_api(PREFECT_API_URL.value()):
        lines += ["", f"Prefect flow run: [{links.flow_run_id}]({prefect_url}) (open `fedflow ui --prefect`)"]
    elif prefect_url is not None:
        lines += ["", f"Prefect flow run: [{links.flow_run_id}]({prefect_url})"]
    elif links.flow_run_id is not None:
        lines += ["", f"Prefect flow run `{links.flow_run_id}` (no Prefect UI serves this run's API)."]
    return "\n".join(lines)


def link_runs(links: RunLinks) -> None:
    """Tag the MLflow run with its flow run (id, page, description) and give the flow run a link to it."""
    tracker = links.tracker
    mlflow_url = mlflow_run_url(mlflow_ui_base(), tracker.experiment_id, tracker.run_id)
    prefect_url = prefect_flow_run_url(links.flow_run_id) if links.flow_run_id else None
    tags = {MLFLOW_DESCRIPTION_TAG: _description(links, prefect_url)}
    if links.flow_run_id is not None:
        tags[PREFECT_FLOW_RUN_ID_TAG] = links.flow_run_id
    if prefect_url is not None:
        tags[PREFECT_FLOW_RUN_URL_TAG] = prefect_url
    tracker.set_tags(tags)
    if links.flow_run_id is not None:
        create_link_artifact(
            link=mlflow_url,
            link_text=f"MLflow run {links.federation_id}",
            key=flow_run_artifact_key(links.domain),
            description=f"{links.federation_id}: its MLflow run (metrics, models), run id {tracker.run_id}",
        )
