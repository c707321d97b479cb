"""A person's session with the UIs: a federation run from a fresh folder, then `fedflow ui --prefect`.

Shared by the browser tests and `docs/take_screenshots.py` (which keeps the README's pictures).
"""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

FEDFLOW = Path(sys.executable).with_name("fedflow")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def page_text(dom: str) -> str:
    """What the page says: its DOM without tags, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


@dataclass(frozen=True)
class Federation:
    """Where the run's pages are (read from the stores, as a user reads the run's summary)."""

    run_id: str
    run_name: str
    experiment_id: str
    flow_run_id: str
    champion_version: str
    champion_value: float
    mlflow_base: str
    prefect_base: str


def user_env(root: Path) -> dict[str, str]:
    """A user's environment: none of the test session's stores, Prefect's home in `root`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "FEDFLOW_"))}
    return {**env, "PREFECT_HOME": str(root / "prefect-home"), "TMPDIR": str(root)}


def run_federation(root: Path, env: dict[str, str], rounds: int) -> None:
    """`fedflow run healthcare --strategy fedprox` in `root`, as the README says."""
    done = subprocess.run(
        [str(FEDFLOW), "run", "healthcare", "--rounds", str(rounds), "--strategy", "fedprox"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def start_ui(root: Path, env: dict[str, str], ports: tuple[int, int]) -> tuple[subprocess.Popen[str], str]:
    command = [str(FEDFLOW), "ui", "--port", str(ports[0]), "--prefect", "--prefect-port", str(ports[1])]
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "Ctrl-C stops the UI" in line:
            return process, "".join(lines)
    raise AssertionError(f"fedflow ui exited with {process.wait()}: {''.join(lines)}")


def stop_ui(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def read_federation(root: Path, ports: tuple[int, int]) -> Federation:
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("healthcare")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    champion = client.get_model_version_by_alias("healthcare-global", "champion")
    return Federation(
        run_id=run.info.run_id,
        run_name=str(run.info.run_name),
        experiment_id=str(experiment.experiment_id),
        flow_run_id=run.data.tags["fedflow.prefect_flow_run_id"],
        champion_version=str(champion.version),
        champion_value=float(champion.tags["ranking_value"]),
        mlflow_base=f"http://127.0.0.1:{ports[0]}",
        prefect_base=f"http://127.0.0.1:{ports[1]}",
    )


@contextlib.contextmanager
def ui_session(root: Path, *, rounds: int) -> Iterator[tuple[Federation, str]]:
    """A FedProx federation run in `root`, both UIs serving it; yields the run and `fedflow ui`'s output."""
    ports = (free_port(), free_port())
    # Where the UIs will be, as a user who serves them elsewhere than 5000/4200 would say.
    env = {
        **user_env(root),
        "FEDFLOW_MLFLOW_UI_URL": f"http://127.0.0.1:{ports[0]}",
        "FEDFLOW_PREFECT_UI_URL": f"http://127.0.0.1:{ports[1]}",
    }
    run_federation(root, env, rounds)
    process, printed = start_ui(root, env, ports)
    try:
        yield read_federation(root, ports), printed
    finally:
        stop_ui(process)
