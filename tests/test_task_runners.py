"""Site tasks on a Dask cluster of worker processes: the same federation as on threads."""

from pathlib import Path

import numpy as np
import pytest
from conftest import sites_file_with_broken_hungary
from typer.testing import CliRunner

from domains import Domain
from fedflow.attacks import AttackConfig
from fedflow.checkpoint import load_checkpoint
from fedflow.cli import app
from fedflow.config import FederationConfig
from fedflow.errors import FedflowError
from flows.coordinator import SiteSelection, federated_training
from flows.task_runners import TaskRunnerConfig, site_task_runner


def test_dask_workers_give_the_same_federation_as_threads(
    prefect_api: None, mlflow_store: str, healthcare: Domain, tmp_path: Path
) -> None:
    # hungary must be excluded and va_long_beach (crashing in every training step) dropped on
    # both runners; on Dask a site's steps may land on a worker that did not validate it.
    sites_file = sites_file_with_broken_hungary(healthcare, tmp_path)
    config = FederationConfig(
        rounds=2, seed=4, audit=False, attack=AttackConfig(kind="dropout", sites=["va_long_beach"])
    )
    dask = site_task_runner(TaskRunnerConfig(kind="dask", workers=2))
    results = {
        "threads": federated_training(
            domain="healthcare",
            federation=config,
            sites=SiteSelection(files=str(sites_file)),
            run_name="threads",
        ),
        "dask": federated_training.with_options(task_runner=dask)(
            domain="healthcare",
            federation=config,
            sites=SiteSelection(files=str(sites_file)),
            run_name="dask",
        ),
    }
    for result in results.values():
        assert list(result.excluded_sites) == ["hungary"]
        assert [h["sites/dropped"] for h in load_checkpoint(result.federation_id)[0].history] == [1.0, 1.0]
    threads, on_dask = load_checkpoint("threads")[1], load_checkpoint("dask")[1]
    for name in threads:
        np.testing.assert_array_equal(threads[name], on_dask[name])
    assert results["threads"].per_site == results["dask"].per_site


def test_a_process_that_did_not_validate_a_site_validates_it_before_using_its_rows(
    healthcare: Domain, tmp_path: Path
) -> None:
    from site_helpers import prepared_agent, site_agent

    from fedflow.messages import EvaluateRequest

    _, train = prepared_agent(healthcare, "cleveland", tmp_path / "prepared")
    evaluate = EvaluateRequest(
        federation_id=train.federation_id,
        round=1,
        rows=train.rows,
        global_payload=train.global_payload,
        local=train.local,
    )
    # Fresh agents (another process): they were never asked to prepare.
    fresh = site_agent(healthcare, "cleveland", tmp_path / "fresh")
    assert fresh.train(train).num_examples > fresh.evaluate(evaluate).metrics["num_examples"] > 0
    broken = sites_file_with_broken_hungary(healthcare, tmp_path).parent / "hungary.csv"
    hungary = site_agent(healthcare, "hungary", tmp_path / "hungary", path=broken)
    with pytest.raises(FedflowError, match="'hungary': its data no longer passes its checks"):
        hungary.evaluate(evaluate)


def test_run_checks_its_task_runner_options() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["run", "healthcare", "--dask-workers", "2"])
    assert result.exit_code != 0 and "--task-runner dask" in result.output
    result = runner.invoke(app, ["run", "healthcare", "--task-runner", "ray"])
    assert result.exit_code != 0 and "--task-runner" in result.output
    assert "'threads' or 'dask'" in result.output
