"""Where a simulation's site tasks run: threads of the flow's process, or a Dask cluster.

Threads (Prefect's default) suit small sites on one machine. A Dask cluster runs the site tasks
in other processes, or on other machines, so heavy sites (a language model each) use every core
and a simulation can spread over a cluster. The model is the same either way: every site task
reads its own rows and seeds itself (`tests/test_task_runners.py` checks it bit for bit).

Workers of a running cluster (`address`) need what the flow's process has: fedflow installed, the
domain, the site files at the same paths, the same `FEDFLOW_*` folders, and `PREFECT_API_URL`.
Dask moves task arguments and results with pickle between the flow and its own workers, so use
it for simulations inside one organisation, never to reach another party's site (that is
cross-silo mode, where only JSON and safetensors cross).
"""

import os
from collections.abc import Callable
from typing import Any, Literal

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel, ConfigDict, Field

from fedflow.errors import FedflowError
from flows.api_warmup import api_ready, warm_up_api
from flows.environment import QUIET_DEFAULTS


class TaskRunnerConfig(BaseModel):
    """How the coordinator runs its simulated sites' tasks."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["threads", "dask"] = Field(
        default="threads", description="threads of the flow's process, or a Dask cluster"
    )
    address: str | None = Field(
        default=None, description="Dask: scheduler of a running cluster, e.g. tcp://10.0.0.5:8786"
    )
    workers: int | None = Field(
        default=None, ge=1, description="Dask without an address: local worker processes (default: cores)"
    )


def _prefect_api_url() -> str:
    """The API this process uses, starting Prefect's temporary server if it would start one anyway.

    Dask workers must report to the same API; without a URL each would start a server of its own.
    """
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    configured = PREFECT_API_URL.value()
    if configured:
        return str(configured)
    warm_up_api()  # nothing new when `fedflow run` already began it
    api_ready()
    return SubprocessASGIServer().api_url


def _threads(config: TaskRunnerConfig) -> TaskRunner[Any]:
    return ThreadPoolTaskRunner()


def _dask(config: TaskRunnerConfig) -> TaskRunner[Any]:
    try:
        from prefect_dask.task_runners import DaskTaskRunner
    except ImportError as error:
        raise FedflowError(
            "the Dask task runner needs the optional extra: pip install 'fedflow[dask]'"
        ) from error
    if config.address:
        return DaskTaskRunner(address=config.address)
    environment = {
        **{key: os.environ.get(key, value) for key, value in QUIET_DEFAULTS.items()},
        "PREFECT_API_URL": _prefect_api_url(),
    }
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": config.workers or os.cpu_count() or 1,
            "threads_per_worker": 1,  # one site task per process: no GIL shared between sites
            "processes": True,
            "env": environment,
            "dashboard_address": None,
        }
    )


TASK_RUNNERS: dict[str, Callable[[TaskRunnerConfig], TaskRunner[Any]]] = {
    "threads": _threads,
    "dask": _dask,
}


def site_task_runner(config: TaskRunnerConfig) -> TaskRunner[Any]:
    """The Prefect task runner for `config` (pass it to `federated_training.with_options`)."""
    return TASK_RUNNERS[config.kind](config)
