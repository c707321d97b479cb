"""Process settings applied before Prefect, MLflow or GX is imported: nothing phones home."""

import os

# Health and finance data: no usage statistics leave the machine unless the user opts in.
QUIET_DEFAULTS = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    # GX and MLflow draw tqdm bars for every metric calculation; the CLI has its own progress.
    "TQDM_DISABLE": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def apply_defaults() -> None:
    """Set the privacy defaults, keeping any value the user set explicitly."""
    for key, value in QUIET_DEFAULTS.items():
        os.environ.setdefault(key, value)
