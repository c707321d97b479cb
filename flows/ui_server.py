"""The UI servers `fedflow ui` starts (MLflow, optionally Prefect): child process groups it owns.

`mlflow server` and `prefect server start` each start uvicorn (and its workers) as further
processes, so stopping the command we started is not enough: a server whose parent was stopped
kept serving the port. Each server therefore runs under a small supervisor (`supervise`, in its
own process group): on SIGTERM, or when the kernel tells it that `fedflow ui` died (even by
SIGKILL: `PR_SET_PDEATHSIG`, Linux), it stops the server and then kills whatever is left of its
group. `fedflow ui` stops every supervisor on Ctrl-C, SIGTERM, SIGHUP or an error.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import NoReturn

from fedflow.errors import FedflowError
from flows.ui_links import mlflow_experiment_url, mlflow_model_url

STOP_GRACE_S = 10.0  # a clean uvicorn shutdown; then SIGKILL
# The supervisor, started with `python -c`: importing this module there keeps it one tested function.
_SUPERVISOR = "from flows.ui_server import supervise; supervise()"
_PR_SET_PDEATHSIG = 1


class UiServerError(FedflowError):
    """A UI server could not start or stopped on its own."""


class Stopped(Exception):
    """`fedflow ui` received SIGTERM or SIGHUP: stop the servers and exit."""


@dataclass(frozen=True)
class ServerSpec:
    """How to start one UI server and how to tell that it answers."""

    name: str  # "MLflow UI"
    command: list[str]
    host: str
    port: int
    port_option: str  # the CLI option that chose the port, for the "port in use" message
    health_path: str
    env: dict[str, str] = field(repr=False)
    log_path: Path

    @property
    def base_url(self) -> str:
        """The URL a browser on this machine opens (a wildcard address is reached on 127.0.0.1)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"


@dataclass
class UiServer:
    """A started server: its spec and its supervisor process (the leader of its process group)."""

    spec: ServerSpec
    process: "subprocess.Popen[bytes]"


def log_folder() -> Path:
    """Where the servers' output goes (the terminal shows only the links)."""
    folder = Path(tempfile.gettempdir()) / f"fedflow-ui-{os.getuid()}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def mlflow_spec(
    *, store_uri: str, artifact_root: Path | None, host: str, port: int, workers: int
) -> ServerSpec:
    """`mlflow server` on the project's store; `artifact_root` for a local (SQLite) store."""
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri]
    command += ["--host", host, "--port", str(port), "--workers", str(workers)]
    if artifact_root is not None:
        command += ["--default-artifact-root", artifact_root.as_uri()]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # GenAI judge jobs need a job runner (one more process tree); fedflow logs none.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return ServerSpec(
        name="MLflow UI",
        command=command,
        host=host,
        port=port,
        port_option="--port",
        health_path="/health",
        env=env,
        log_path=log_folder() / f"mlflow-{port}.log",
    )


def prefect_spec(*, port: int) -> ServerSpec:
    """`prefect server start` with its UI, telemetry off unless the user opted in.

    It keeps the user's `PREFECT_HOME` (Prefect's default, `~/.prefect`, otherwise): the
    database that `fedflow run`'s temporary API writes its flow runs to.
    """
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--ui", "--no-background"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PREFECT_API_URL", None)  # the UI must talk to this server, not one named for clients
    # The UI's pages call the API at PREFECT_UI_API_URL, which follows the *setting*
    # PREFECT_SERVER_API_PORT (4200), not `--port`: on any other port they would fail to connect.
    env.setdefault("PREFECT_UI_API_URL", f"http://127.0.0.1:{port}/api")
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("DO_NOT_TRACK", "1")
    return ServerSpec(
        name="Prefect UI",
        command=command,
        host="127.0.0.1",
        port=port,
        port_option="--prefect-port",
        health_path="/api/health",
        env=env,
        log_path=log_folder() / f"prefect-{port}.log",
    )


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on (or holds) `host:port`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def check_ports(specs: list[ServerSpec]) -> None:
    """Refuse, naming the port and its option, when a server's port is taken."""
    for spec in specs:
        if port_in_use(spec.host, spec.port):
            raise UiServerError(
                f"port {spec.port} is already in use on {spec.host}, so the {spec.name} cannot start there: "
                f"stop what uses it or choose another port with {spec.port_option}"
            )


def launch(spec: ServerSpec) -> UiServer:
    """Start the server under its supervisor, in a new process group, output to its log file."""
    with spec.log_path.open("ab") as log:
        log.write(f"\n--- fedflow ui pid {os.getpid()}: {spec.name} on port {spec.port}\n".encode())
        log.flush()
        process = subprocess.Popen(
            [sys.executable, "-c", _SUPERVISOR, str(os.getpid()), *spec.command],
            env=spec.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches fedflow, which then stops the group itself
        )
    return UiServer(spec=spec, process=process)


def answers(url: str, timeout_s: float = 2.0) -> bool:
    """True when `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _exit_reason(server: UiServer) -> str:
    try:
        own = server.spec.log_path.read_text(errors="replace").rpartition(f"pid {os.getpid()}: ")[2]
    except OSError:
        own = ""
    if "address already in use" in own.lower():
        return f"port {server.spec.port} is already in use (choose another with {server.spec.port_option})"
    lines = [line.strip() for line in own.splitlines()[1:] if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    last = (errors or lines or ["no output"])[-1][:200]
    return f"it exited with code {server.process.returncode} ({last})"


def wait_until_answers(server: UiServer, timeout_s: float) -> None:
    """Wait until the server answers its health check; raise with the reason when it cannot."""
    deadline = time.monotonic() + timeout_s
    url = server.spec.base_url + server.spec.health_path
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise UiServerError(
                f"the {server.spec.name} could not start: {_exit_reason(server)}; log: {server.spec.log_path}"
            )
        if answers(url):
            return
        time.sleep(0.2)
    raise UiServerError(
        f"the {server.spec.name} did not answer on {server.spec.base_url} within {timeout_s:g} s "
        f"(a busy machine? raise --startup-timeout); log: {server.spec.log_path}"
    )


def serve(servers: list[UiServer]) -> UiServer:
    """Block until one of the servers exits on its own; return it."""
    while True:
        for server in servers:
            if server.process.poll() is not None:
                return server
        time.sleep(0.5)


def stop(servers: list[UiServer], grace_s: float = STOP_GRACE_S) -> None:
    """Stop every server's supervisor (which stops its group), then kill what is left of each group."""
    for server in servers:
        if server.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                server.process.send_signal(signal.SIGTERM)
    for server in servers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(timeout=grace_s + 5)
        _kill_group(server.process.pid)
        if server.process.poll() is None:
            server.process.wait()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group (Linux: from /proc; zombies left out)."""
    members = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _parent, group = stat.rpartition(")")[2].split()[:3]
        if int(group) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into `Stopped` (Ctrl-C is already `KeyboardInterrupt`)."""

    def raise_stopped(signum: int, _frame: FrameType | None) -> None:
        raise Stopped(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, raise_stopped) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def read_json(url: str) -> dict[str, object]:
    """GET a JSON document from a server that answers (an error reads as empty)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            loaded = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def mlflow_links(base_url: str) -> list[tuple[str, str]]:
    """(label, URL) of every experiment's runs in model-training mode and every registered model.

    MLflow 3 opens an experiment in its GenAI mode (traces, no runs) unless the URL asks for
    `workflowType=machine_learning`; registered models live under "Model registry".
    """
    api = base_url + "/api/2.0/mlflow"
    experiments = read_json(api + "/experiments/search?max_results=1000").get("experiments", [])
    models = read_json(api + "/registered-models/search?max_results=1000").get("registered_models", [])
    links = []
    for experiment in sorted(experiments if isinstance(experiments, list) else [], key=lambda e: e["name"]):
        if experiment["name"] != "Default":
            url = mlflow_experiment_url(base_url, str(experiment["experiment_id"]))
            links.append((f"runs of {experiment['name']}", url))
    for model in sorted(models if isinstance(models, list) else [], key=lambda m: m["name"]):
        links.append((f"model registry: {model['name']}", mlflow_model_url(base_url, model["name"])))
    return links


def _die_with_owner(owner: int) -> None:
    """Ask the kernel for SIGTERM when the owner dies; exit now if it already has."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != owner:
        sys.exit(0)


def _stop_group(server: "subprocess.Popen[bytes]", grace_s: float) -> None:
    """SIGTERM to the server (it stops its workers), then SIGKILL to whatever is left of the group."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    me, group = os.getpid(), os.getpgrp()
    if not Path("/proc").is_dir():  # no way to list the group: give the server its grace, then end it all
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=grace_s)
        os.killpg(group, signal.SIGKILL)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        server.poll()  # reaps it, so that it no longer counts
        if not [pid for pid in group_members(group) if pid != me]:
            return
        time.sleep(0.1)
    for pid in group_members(group):
        if pid != me:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    server.wait()


def supervise(argv: list[str] | None = None) -> NoReturn:
    """The supervisor's main: `<owner pid> <command...>`; runs the command, then stops its group."""
    args = sys.argv[1:] if argv is None else argv
    _die_with_owner(int(args[0]))
    stopping: list[int] = []  # a flag, not an exception: nothing may interrupt starting the server
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    server = subprocess.Popen(args[1:])  # same process group as this supervisor
    while server.poll() is None and not stopping:
        time.sleep(0.1)
    code = 0 if stopping else int(server.returncode)
    _stop_group(server, STOP_GRACE_S)
    sys.exit(code)
