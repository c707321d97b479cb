"""The MLflow and Prefect UIs as a person sees them, after the README's own commands.

In a fresh folder: `fedflow run healthcare --strategy fedprox` (the temporary Prefect API writes to
PREFECT_HOME, MLflow to ./mlflow.db), then `fedflow ui --prefect`, then headless Chromium (Debian's
package) opens the links it printed and the pages they lead to. The assertions are on the DOM the
browser rendered, not on the stores behind it.
"""

import json
import re
import urllib.request
from collections.abc import Iterator

import pytest
from browser import rendered_dom
from ui_session import Federation, page_text, ui_session

pytestmark = pytest.mark.slow  # a federation, two UI servers and a browser
ROUNDS = 2


@pytest.fixture(scope="module")
def looked_at(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Federation, str]]:
    """A finished federation and both UIs serving it; yields the run and what `fedflow ui` printed."""
    with ui_session(tmp_path_factory.mktemp("browser"), rounds=ROUNDS) as session:
        yield session


def test_the_printed_link_lands_on_the_runs_in_model_training_mode(looked_at: tuple[Federation, str]) -> None:
    federation, printed = looked_at
    link = re.search(
        r"http://127\.0\.0\.1:\d+/#/experiments/\d+/runs\?workflowType=machine_learning", printed
    )
    assert link is not None, printed
    page = page_text(rendered_dom(link.group(0)))
    assert federation.run_name in page  # the runs table lists the federation, not GenAI's traces view
    assert "fedprox" in federation.run_name


def test_the_run_page_shows_its_name_headline_metric_and_prefect_link(
    looked_at: tuple[Federation, str],
) -> None:
    federation, _ = looked_at
    url = f"{federation.mlflow_base}/#/experiments/{federation.experiment_id}/runs/{federation.run_id}"
    page = page_text(rendered_dom(url))
    assert federation.run_name in page and "fedprox" in federation.run_name
    assert "fedflow.strategy" in page and "global/roc_auc" in page
    assert federation.flow_run_id in page  # the description names the Prefect flow run


def test_the_runs_link_to_each_other_in_the_browser(looked_at: tuple[Federation, str]) -> None:
    """Follow the MLflow run's link to its Prefect flow run, and the flow run's link artifact back."""
    federation, _ = looked_at
    run_page = rendered_dom(
        f"{federation.mlflow_base}/#/experiments/{federation.experiment_id}/runs/{federation.run_id}"
    )
    flow_run_page = f"{federation.prefect_base}/runs/flow-run/{federation.flow_run_id}"
    assert f'href="{flow_run_page}"' in run_page
    assert federation.run_name in page_text(rendered_dom(flow_run_page))
    back = page_text(rendered_dom(f"{federation.prefect_base}/artifacts/key/healthcare-mlflow-run"))
    assert f"MLflow run {federation.run_name}" in back or federation.run_id in back


def test_the_registered_model_shows_the_champion_alias_and_its_score(
    looked_at: tuple[Federation, str],
) -> None:
    federation, printed = looked_at
    assert f"{federation.mlflow_base}/#/models/healthcare-global" in printed
    model_page = page_text(rendered_dom(f"{federation.mlflow_base}/#/models/healthcare-global"))
    assert "champion" in model_page and "ranking_value" in model_page
    assert f"Version {federation.champion_version}" in model_page
    version_url = (
        f"{federation.mlflow_base}/#/models/healthcare-global/versions/{federation.champion_version}"
    )
    version_page = page_text(rendered_dom(version_url))
    assert "champion" in version_page
    assert f"roc_auc (the sites' hold-out mean): {federation.champion_value:.4f}" in version_page


def test_the_prefect_flow_run_has_the_same_name_tags_and_keyed_round_artifacts(
    looked_at: tuple[Federation, str],
) -> None:
    federation, _ = looked_at
    page = page_text(rendered_dom(f"{federation.prefect_base}/runs/flow-run/{federation.flow_run_id}"))
    assert federation.run_name in page and "strategy:fedprox" in page
    for round_number in range(1, ROUNDS + 1):
        key = f"{federation.run_name}-round-{round_number:03d}"
        artifact = page_text(rendered_dom(f"{federation.prefect_base}/artifacts/key/{key}"))
        assert key in artifact and f"Round {round_number} of {ROUNDS}" in artifact


def test_the_prefect_ui_it_started_sends_no_telemetry(looked_at: tuple[Federation, str]) -> None:
    federation, printed = looked_at
    assert f"ready: Prefect UI on {federation.prefect_base}/runs (telemetry off)" in printed
    with urllib.request.urlopen(f"{federation.prefect_base}/api/admin/settings", timeout=10) as answer:
        settings = json.loads(answer.read())
    assert settings["server"]["analytics_enabled"] is False
    with urllib.request.urlopen(f"{federation.prefect_base}/ui-settings", timeout=10) as answer:
        ui_settings = json.loads(answer.read())
    assert ui_settings["api_url"] == f"{federation.prefect_base}/api"  # its pages reach this server
