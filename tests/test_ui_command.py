"""`fedflow ui` as a user runs it: a real process, real MLflow (and Prefect) servers, real signals."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient
from ui_session import free_port

pytestmark = pytest.mark.slow  # starts servers
FEDFLOW = Path(sys.executable).with_name("fedflow")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _serving(port: int) -> list[psutil.Process]:
    """Processes whose command line names the port (the servers and their workers)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if str(port) in cmdline and any("mlflow" in a or "prefect" in a or "uvicorn" in a for a in cmdline):
            found.append(process)
    return found


@pytest.fixture
def store(tmp_path: Path) -> dict[str, str]:
    """A SQLite store with the healthcare experiment and its registered model, and the env to use it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.create_experiment("healthcare", artifact_location=(tmp_path / "artifacts").as_uri())
    client.create_registered_model("healthcare-global")
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, FEDFLOW_ARTIFACT_ROOT=str(tmp_path / "artifacts"))
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    env.pop("PREFECT_API_URL", None)
    return env


def _start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(FEDFLOW), "ui", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _lines_until_ready(process: subprocess.Popen[str], timeout_s: float = 240) -> Iterator[str]:
    """Stdout lines up to the closing line of the links (fails if the command exits first)."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    for line in process.stdout:
        yield line
        if "Ctrl-C stops the UI" in line:
            return
        assert time.monotonic() < deadline, "fedflow ui took too long to print its links"
    raise AssertionError(f"fedflow ui exited with {process.wait()} before it was ready")


def _stop_and_check(process: subprocess.Popen[str], ports: list[int]) -> str:
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(_port_free(port) for port in ports):
        time.sleep(0.2)
    assert all(_port_free(port) for port in ports), "a UI still holds its port after fedflow ui stopped"
    time.sleep(0.5)  # a worker reaped by its supervisor's SIGKILL disappears at once; give /proc a moment
    leftovers = [p for port in ports for p in _serving(port)]
    assert not leftovers, f"server processes survived: {[p.cmdline() for p in leftovers]}"
    return rest


def test_ui_prints_links_that_answer_and_stops_every_server_on_sigterm(
    store: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    process = _start(["--port", str(port)], store, tmp_path)
    try:
        output = "".join(_lines_until_ready(process))
        assert f"ready: MLflow UI on http://127.0.0.1:{port}" in output
        experiment = re.search(
            rf"http://127\.0\.0\.1:{port}/#/experiments/(\d+)/runs\?workflowType=machine_learning", output
        )
        assert experiment is not None, output
        assert f"http://127.0.0.1:{port}/#/models/healthcare-global" in output
        # The page answers (the browser resolves the fragment), and the id is healthcare's.
        with urllib.request.urlopen(experiment.group(0), timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
        api = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get?experiment_id={experiment.group(1)}"
        with urllib.request.urlopen(api, timeout=10) as answer:
            assert json.loads(answer.read())["experiment"]["name"] == "healthcare"
        assert _serving(port), "the MLflow server should be running now"
    finally:
        if process.poll() is None:
            rest = _stop_and_check(process, [port])
            assert "stopped: MLflow UI" in rest


def test_a_port_in_use_is_refused_by_number(store: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [str(FEDFLOW), "ui", "--port", str(port)],
            env=store,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode != 0
    assert f"port {port} is already in use" in done.stderr and "--port" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


# `fedflow ui --prefect` (telemetry off, the Prefect pages reaching their API) is exercised by
# tests/test_browser_views.py, which starts it once for a browser to look at.
