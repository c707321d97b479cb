"""`fedflow run` owns its temporary Prefect API: it never leaves a server behind, whatever ends
the run, says clearly why the API could not start, and keeps the server's output out of the
terminal."""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

FEDFLOW = str(Path(sys.executable).with_name("fedflow"))
NOISE = re.compile(r"Traceback|\bERROR\b|CancelledError")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(
        HOME=str(tmp_path),
        PREFECT_HOME=str(tmp_path / "prefect"),
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        FEDFLOW_ARTIFACT_ROOT=str(tmp_path / "artifacts"),
        FEDFLOW_STATE_DIR=str(tmp_path / "state"),
        **extra,
    )
    return env


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention `text` (their environment is not read)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command:
            found.append(f"{entry.name}: {command}")
    return found


def _server_ports(tmp_path: Path) -> list[str]:
    log = tmp_path / "prefect" / "fedflow-api-server.log"
    return re.findall(r"on port (\d+)", log.read_text()) if log.is_file() else []


def _leftover_servers(tmp_path: Path, wait_s: float = 15) -> list[str]:
    """Servers this test's runs started that are still alive, by their ports (in the log)."""
    deadline = time.monotonic() + wait_s  # the kernel's parent-death signal is delivered asynchronously
    while True:
        ours = [f"create_app --host 127.0.0.1 --port {port} " for port in _server_ports(tmp_path)]
        left = [p for text in ours for p in _processes_mentioning(text)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


@pytest.fixture(autouse=True)
def _no_server_outlives_the_test(tmp_path: Path) -> Iterator[None]:
    yield
    for line in _leftover_servers(tmp_path, wait_s=0):  # only after a failure: ours, by their port
        with contextlib.suppress(OSError):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)


@pytest.mark.slow
def test_a_run_exits_cleanly_and_stops_its_server(tmp_path: Path) -> None:
    done = subprocess.run(
        [FEDFLOW, "run", "healthcare", "--rounds", "1", "--no-audit"],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert not NOISE.search(output), output[-3000:]
    assert _server_ports(tmp_path), "the run did not start its own temporary API"
    assert _leftover_servers(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_run_ended_by_a_signal_leaves_no_server(tmp_path: Path, how: signal.Signals) -> None:
    state = tmp_path / "state" / "runs" / "stopped" / "state.json"
    process = subprocess.Popen(
        [FEDFLOW, "run", "healthcare", "--rounds", "40", "--no-audit", "--run-name", "stopped"],
        env=_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            if state.is_file() and json.loads(state.read_text())["round"] >= 1:
                break
            time.sleep(0.1)
        assert process.poll() is None, "the run ended first: " + process.stderr.read().decode()[-2000:]
        process.send_signal(how)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert code != 0
    assert _leftover_servers(tmp_path) == []
    if how == signal.SIGTERM:
        _resume_cleanly(tmp_path)


def _resume_cleanly(tmp_path: Path) -> None:
    done = subprocess.run(
        [FEDFLOW, "resume", "stopped"],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "resuming" in done.stdout, output[-3000:]
    assert not NOISE.search(output), output[-3000:]
    assert _leftover_servers(tmp_path) == []


@pytest.mark.slow
def test_an_api_that_cannot_start_is_a_clear_failure(tmp_path: Path) -> None:
    done = subprocess.run(
        [FEDFLOW, "run", "healthcare", "--rounds", "1"],
        env=_env(tmp_path, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="0"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: the temporary Prefect API did not answer")
    assert "Traceback" not in done.stdout + done.stderr
    assert _leftover_servers(tmp_path) == []


@pytest.mark.slow
def test_a_busy_port_is_reported_as_such(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [FEDFLOW, "run", "healthcare", "--rounds", "1"],
            env=_env(tmp_path, FEDFLOW_API_PORT=str(port)),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode != 0
    assert f"port {port} (FEDFLOW_API_PORT) is already in use" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
