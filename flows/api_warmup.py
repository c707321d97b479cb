"""Start the temporary Prefect API server early, while this process is still importing.

Without a `PREFECT_API_URL`, a run needs a temporary API server: ~4 s on two cores, during which
the run would wait. Launched before torch, MLflow and GX are imported, the server boots on the
other core while this process imports. It is a child process this one owns
(`flows.local_server`): `api_ready` waits for it and points Prefect's client at it, and it is
stopped when this process exits for any reason, after Prefect's own exit handlers have sent
their last events.
"""

import atexit
import os
import signal
import threading
from types import FrameType

from flows import local_server
from flows.local_server import LocalServer

_SERVERS: list[LocalServer] = []
_READY: list[bool] = []
_STOP_SIGNALS = ("SIGTERM", "SIGHUP")


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # An exception instead of the default instant death: `finally` blocks and atexit run, and so
    # the server is stopped. Exit status as a shell reports a process killed by that signal.
    raise SystemExit(128 + signum)


def _stop_on_exit() -> None:
    atexit.register(stop_api)
    if threading.current_thread() is not threading.main_thread():
        return
    for name in _STOP_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) is signal.SIG_DFL:
            signal.signal(number, _exit_on_signal)


def _startup_timeout_s() -> float:
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as TIMEOUT

    configured = float(TIMEOUT.value())
    if "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in os.environ:
        return configured
    return max(configured, local_server.DEFAULT_STARTUP_TIMEOUT_S)


def warm_up_api() -> None:
    """Launch the temporary server without waiting, if a run would need one (else nothing)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, PREFECT_SERVER_EPHEMERAL_ENABLED

    if _SERVERS or PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    log_path = PREFECT_HOME.value() / "fedflow-api-server.log"
    _stop_on_exit()
    _SERVERS.append(local_server.launch(log_path, local_server.requested_port()))


def serves_api(url: str | None) -> bool:
    """True when `url` is the temporary API this process started (it has no UI, and stops with us)."""
    return url is not None and any(server.api_url == url for server in _SERVERS)


def api_ready() -> None:
    """Wait for the server `warm_up_api` launched and point Prefect's client at it.

    Raises `LocalServerError` (one line: why, and what to do) when it cannot start.
    """
    if not _SERVERS or _READY:
        return
    server = local_server.wait_until_healthy(_SERVERS[0], _startup_timeout_s())
    _SERVERS[0] = server
    _point_client_at(server.api_url)
    _READY.append(True)


def _point_client_at(url: str | None) -> None:
    from prefect.context import refresh_global_settings_context

    if url is None:
        os.environ.pop("PREFECT_API_URL", None)
    else:
        os.environ["PREFECT_API_URL"] = url
    refresh_global_settings_context()  # Prefect read its settings when imported


def stop_api() -> None:
    """Stop the server this process started, if any, and wait until it has exited."""
    while _SERVERS:
        local_server.stop(_SERVERS.pop())
    if _READY:
        _READY.clear()
        _point_client_at(None)
