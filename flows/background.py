"""Coordinator work that can trail the rounds: registration, logging, checkpoints, in order.

A round's tracking (register the model version, move the champion alias, log its metrics,
write its Prefect artifact and its checkpoint) runs on one background thread while the sites
train the next round. Jobs run strictly in submission order; the first failure is raised in
the flow at the next submission or at `drain()`. A checkpoint is written only after its round's
version is registered, so a resumed run never lacks a version it has already passed.
"""

import contextvars
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class InOrder:
    """A single worker thread running jobs in order, in the submitter's context (Prefect run)."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fedflow-tracking")
        self._pending: list[Future[Any]] = []
        self._failed = False

    def submit(self, job: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Queue a job; raise now if an earlier job failed."""
        self._raise_failures()
        context = contextvars.copy_context()
        self._pending.append(self._executor.submit(context.run, self._guarded, job, *args, **kwargs))

    def _guarded(self, job: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # After a failure nothing later may run: a later checkpoint would skip an unregistered round.
        if self._failed:
            raise RuntimeError("skipped: an earlier tracking job failed")
        try:
            return job(*args, **kwargs)
        except BaseException:
            self._failed = True
            raise

    def _raise_failures(self) -> None:
        for future in [f for f in self._pending if f.done()]:
            self._pending.remove(future)
            future.result()  # re-raises a job's exception

    def drain(self) -> None:
        """Wait for every queued job; raise the first failure."""
        try:
            for future in self._pending:
                future.result()
        finally:
            self._pending.clear()

    def close(self) -> None:
        """Wait for the queue, then stop the thread."""
        try:
            self.drain()
        finally:
            self._executor.shutdown(wait=True)
