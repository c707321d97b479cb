"""Start Prefect's temporary API server early, while this process is still importing.

Without a `PREFECT_API_URL`, Prefect starts a temporary server process when the first flow
runs: ~4 s on two cores, during which the run waits. Started in the background before torch,
MLflow and GX are imported, that server boots on the other core while this process imports.
The flow then finds the same server (Prefect keeps one per process) already up.
"""

import threading

_STARTED: list[threading.Thread] = []


def warm_up_api() -> None:
    """Begin starting the temporary server in a thread, if a run would start one (else nothing)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if _STARTED or PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    # Imported here, not in the thread: two threads importing at once can meet in a circular import.
    from prefect.server.api.server import SubprocessASGIServer

    thread = threading.Thread(target=SubprocessASGIServer().start, name="prefect-api-warmup", daemon=True)
    thread.start()
    _STARTED.append(thread)


def api_ready() -> None:
    """Wait until a warm-up begun by `warm_up_api` has finished (its errors surface in the flow)."""
    for thread in _STARTED:
        thread.join()
