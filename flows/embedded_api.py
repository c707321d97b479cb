"""Prefect's API served from a thread of this process, for one-machine simulations.

Without a `PREFECT_API_URL`, Prefect starts a temporary server in a subprocess: a second Python
that imports Prefect's server again (~4 s and ~250 MB here). For a simulation on one machine the
same API app can run on a background thread instead; the flow talks to it over HTTP on
127.0.0.1 exactly as it would to `prefect server start`. Cross-silo runs need a real server.
"""

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_LOCK = threading.Lock()
_RUNNING: dict[str, Any] = {}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_embedded_api(*, timeout_s: float = 60.0) -> str:
    """Serve Prefect's API on a daemon thread (once per process); return its URL."""
    with _LOCK:
        if "url" in _RUNNING:
            return str(_RUNNING["url"])
        import uvicorn

        # What Prefect's own temporary server sets: no UI, no background services.
        os.environ.setdefault("PREFECT__SERVER_EPHEMERAL", "1")
        os.environ.setdefault("PREFECT_UI_ENABLED", "0")
        from prefect.server.api.server import create_app

        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(ephemeral=True, final=True),
                host="127.0.0.1",
                port=port,
                log_level="error",
                lifespan="on",
            )
        )
        thread = threading.Thread(target=server.run, name="prefect-api", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"Prefect's API did not start on 127.0.0.1:{port} within {timeout_s:.0f} s"
                )
            time.sleep(0.02)
        _RUNNING.update(url=f"http://127.0.0.1:{port}/api", server=server, thread=thread)
        return str(_RUNNING["url"])


@contextmanager
def embedded_api() -> Iterator[str]:
    """Run the flows inside this block against an API served by this process."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = start_embedded_api()
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield url
