"""Addresses of fedflow's runs and models in the MLflow UI (what `fedflow ui` serves).

Pure string building, so the flow, `fedflow ui` and `fedflow compare` print and link the same
pages. The UI's base address is `FEDFLOW_MLFLOW_UI_URL`, else MLflow's own default.
"""

import os
from urllib.parse import quote

MLFLOW_UI_VARIABLE = "FEDFLOW_MLFLOW_UI_URL"
DEFAULT_MLFLOW_UI_URL = "http://127.0.0.1:5000"
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
