"""Addresses of fedflow's runs and models in the MLflow and Prefect UIs (what `fedflow ui` serves).

Pure string building, so the flow, `fedflow ui` and `fedflow compare` print and link the same
pages. The UIs' base addresses are `FEDFLOW_MLFLOW_UI_URL` and `FEDFLOW_PREFECT_UI_URL`, else the
defaults `fedflow ui` (and `fedflow ui --prefect`) serve on.
"""

import os
from urllib.parse import quote

MLFLOW_UI_VARIABLE = "FEDFLOW_MLFLOW_UI_URL"
DEFAULT_MLFLOW_UI_URL = "http://127.0.0.1:5000"
PREFECT_UI_VARIABLE = "FEDFLOW_PREFECT_UI_URL"
DEFAULT_PREFECT_UI_URL = "http://127.0.0.1:4200"
# MLflow 3 opens an experiment in its GenAI view unless asked for the model-training one.
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def mlflow_ui_base() -> str:
    """Where the MLflow UI is served: `FEDFLOW_MLFLOW_UI_URL` or http://127.0.0.1:5000."""
    return (os.environ.get(MLFLOW_UI_VARIABLE) or DEFAULT_MLFLOW_UI_URL).rstrip("/")


def mlflow_run_url(base: str, experiment_id: str, run_id: str) -> str:
    """The run's page: `<base>/#/experiments/<experiment_id>/runs/<run_id>`."""
    return f"{base.rstrip('/')}/#/experiments/{quote(experiment_id)}/runs/{quote(run_id)}"


def mlflow_experiment_url(base: str, experiment_id: str) -> str:
    """The experiment's runs table, in the model-training view."""
    return f"{base.rstrip('/')}/#/experiments/{quote(experiment_id)}/runs?{MODEL_TRAINING_VIEW}"


def mlflow_model_url(base: str, model_name: str, version: str | None = None) -> str:
    """A registered model's page, or one of its versions."""
    page = f"{base.rstrip('/')}/#/models/{quote(model_name)}"
    return f"{page}/versions/{quote(version)}" if version is not None else page


def prefect_ui_base() -> str:
    """Where `fedflow ui --prefect` serves the Prefect UI: `FEDFLOW_PREFECT_UI_URL` or http://127.0.0.1:4200."""
    return (os.environ.get(PREFECT_UI_VARIABLE) or DEFAULT_PREFECT_UI_URL).rstrip("/")


def prefect_flow_run_page(base: str, flow_run_id: str) -> str:
    """A flow run's page in the Prefect UI."""
    return f"{base.rstrip('/')}/runs/flow-run/{quote(flow_run_id)}"
