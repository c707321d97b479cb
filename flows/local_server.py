"""The temporary Prefect API server of a `fedflow run`: a child process this process owns.

Prefect starts its own temporary server when no `PREFECT_API_URL` is set, but under load that
server could time out, lose a race for its port, keep running with no parent, and print its
services' shutdown errors into the user's terminal. This one is started on a free port, checked
for health, stopped whenever this process ends (normally, on an exception, on SIGTERM/SIGHUP,
and by the kernel if this process is killed outright), and writes its output to a log file.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from fedflow.errors import FedflowError

# Set to use a fixed port for the temporary API (e.g. one a firewall allows); a random free one otherwise.
PORT_VARIABLE = "FEDFLOW_API_PORT"
# When the user has not chosen a startup timeout: a busy two-core machine needs more than Prefect's 20 s.
DEFAULT_STARTUP_TIMEOUT_S = 90.0
PORT_ATTEMPTS = 3

# Runs in the child before uvicorn: the kernel kills it when its parent dies, even by SIGKILL
# (Linux); a parent already gone by then means nobody would ever stop it. SIGKILL, not SIGTERM:
# with its owner gone the server has nobody to serve, and uvicorn's graceful shutdown of Prefect's
# services took over 15 s under load (SQLite is safe against a kill).
_CHILD = """
import ctypes, os, runpy, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)
sys.argv = ["uvicorn", *sys.argv[2:]]
runpy.run_module("uvicorn", run_name="__main__")
"""


class LocalServerError(FedflowError):
    """The temporary Prefect API could not be started."""


@dataclass
class LocalServer:
    """A running temporary API server: its process, port and log file."""

    process: "subprocess.Popen[bytes]"
    port: int
    log_path: Path
    fixed_port: bool

    @property
    def api_url(self) -> str:
        """The URL Prefect's client needs (`PREFECT_API_URL`)."""
        return f"http://127.0.0.1:{self.port}/api"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def requested_port() -> int | None:
    """The port the user fixed in `FEDFLOW_API_PORT`, or None for a free one."""
    raw = os.environ.get(PORT_VARIABLE, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise LocalServerError(f"{PORT_VARIABLE}={raw!r} is not a port number (1-65535)")
    return int(raw)


def _server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    # What Prefect's own temporary server sets: no UI, the ephemeral server's behaviour.
    env.update(PREFECT_UI_ENABLED="0", PREFECT__SERVER_EPHEMERAL="1", PREFECT__SERVER_FINAL="1")
    return env


def launch(log_path: Path, port: int | None = None) -> LocalServer:
    """Start the server process on `port` (a free one when None) without waiting for it."""
    fixed = port is not None
    chosen = port if port is not None else _free_port()
    if fixed and not _port_is_free(chosen):
        raise LocalServerError(
            f"port {chosen} ({PORT_VARIABLE}) is already in use on 127.0.0.1: stop what uses it, "
            f"choose another port, or unset {PORT_VARIABLE} to use a free one"
        )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    uvicorn_args = ["--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1"]
    uvicorn_args += ["--port", str(chosen), "--log-level", "error", "--lifespan", "on"]
    with log_path.open("ab") as log:
        log.write(f"\n--- fedflow pid {os.getpid()}: temporary Prefect API on port {chosen}\n".encode())
        log.flush()
        process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(os.getpid()), *uvicorn_args],
            env=_server_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches fedflow, which then stops the server itself
        )
    return LocalServer(process=process, port=chosen, log_path=log_path, fixed_port=fixed)


def _healthy(server: LocalServer) -> bool:
    try:
        with urllib.request.urlopen(server.api_url + "/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _own_log(server: LocalServer) -> str:
    """This server's part of the log file (runs append to it; each starts with a header line)."""
    try:
        text = server.log_path.read_text(errors="replace")
    except OSError:
        return ""
    return text.rpartition(f"temporary Prefect API on port {server.port}\n")[2]


def _exit_reason(server: LocalServer) -> str:
    output = _own_log(server)
    if "address already in use" in output.lower():
        return f"port {server.port} is already in use on 127.0.0.1"
    # The first error is the cause; what follows is often the failed shutdown it led to.
    errors = [line for line in output.splitlines() if "ERROR" in line or "Error" in line]
    first = (errors or [line for line in output.splitlines() if line.strip()] or ["no output"])[0]
    return f"the server exited with code {server.process.returncode} ({first.strip()[:200]})"


def wait_until_healthy(server: LocalServer, timeout_s: float) -> LocalServer:
    """Wait for the API to answer; start again on another free port if the chosen one was taken.

    Returns the server that answered (a new one after a lost race for the port); stops what it
    started and raises `LocalServerError` with one line saying why when none answers.
    """
    deadline = time.monotonic() + timeout_s
    for attempt in range(1, PORT_ATTEMPTS + 1):
        while server.process.poll() is None and time.monotonic() < deadline:
            if _healthy(server):
                return server
            time.sleep(0.1)
        if server.process.poll() is None:
            stop(server)
            raise LocalServerError(
                f"the temporary Prefect API did not answer within {timeout_s:g} s (a busy machine?); "
                "raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS or set PREFECT_API_URL to a "
                f"running server (`prefect server start`); server log: {server.log_path}"
            )
        reason = _exit_reason(server)
        port_taken = reason.startswith("port ")
        if not port_taken or server.fixed_port or attempt == PORT_ATTEMPTS or time.monotonic() >= deadline:
            raise LocalServerError(
                f"the temporary Prefect API could not start: {reason}; log: {server.log_path}"
            )
        server = launch(server.log_path)  # another process took the free port first: pick another
    raise AssertionError("unreachable")


def stop(server: LocalServer, grace_s: float = 10.0) -> None:
    """Stop the server and wait for it: SIGTERM (a clean shutdown), SIGKILL after `grace_s`."""
    process = server.process
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
