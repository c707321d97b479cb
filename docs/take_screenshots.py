"""Retake the README's pictures of the MLflow and Prefect UIs (docs/img/*.png).

Runs the same session as tests/test_browser_views.py — `fedflow run healthcare --strategy fedprox`
in a fresh temporary folder, then `fedflow ui --prefect` — and screenshots each page in headless
Chromium (Debian's package; `make browser` installs it):

    .venv/bin/python docs/take_screenshots.py [--rounds 5]
"""

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from browser import screenshot  # noqa: E402
from ui_session import Federation, ui_session  # noqa: E402

IMAGES = HERE / "img"


def pages(federation: Federation) -> dict[str, str]:
    """File name -> the page it shows."""
    mlflow, prefect = federation.mlflow_base, federation.prefect_base
    experiment = f"{mlflow}/#/experiments/{federation.experiment_id}"
    model = f"{mlflow}/#/models/healthcare-global"
    return {
        "mlflow-runs.png": f"{experiment}/runs?workflowType=machine_learning",
        "mlflow-run.png": f"{experiment}/runs/{federation.run_id}",
        "mlflow-registered-model.png": model,
        "mlflow-champion-version.png": f"{model}/versions/{federation.champion_version}",
        "prefect-flow-run.png": f"{prefect}/runs/flow-run/{federation.flow_run_id}",
        "prefect-round-artifact.png": f"{prefect}/artifacts/key/{federation.run_name}-round-001",
    }


def main() -> None:
    """Take every picture into docs/img/."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="fedflow-screens-") as folder,
        ui_session(Path(folder), rounds=args.rounds) as (federation, _printed),
    ):
        for name, url in pages(federation).items():
            print(screenshot(url, IMAGES / name, size="1800,1000"), flush=True)


if __name__ == "__main__":
    main()
