"""Many simulated sites per Prefect task: the same model, the same exclusions, the same drops."""

from pathlib import Path

import numpy as np
from conftest import sites_file_with_broken_hungary

from domains import Domain
from fedflow.attacks import AttackConfig
from fedflow.checkpoint import load_checkpoint
from fedflow.config import FederationConfig
from flows.coordinator import SiteSelection, federated_training
from flows.transport import TransportConfig


def test_batches_of_sites_give_the_same_federation(
    prefect_api: None, mlflow_store: str, healthcare: Domain, tmp_path: Path
) -> None:
    # hungary's file is broken (out of range ages): it must be excluded in both modes;
    # va_long_beach crashes in every training step: it must be dropped in both modes.
    sites_file = sites_file_with_broken_hungary(healthcare, tmp_path)
    config = FederationConfig(
        rounds=2, seed=6, audit=False, attack=AttackConfig(kind="dropout", sites=["va_long_beach"])
    )
    results = {}
    for name, per_task in (("one", 1), ("batched", 3)):
        results[name] = federated_training(
            domain="healthcare",
            federation=config,
            sites=SiteSelection(files=str(sites_file)),
            run_name=name,
            transport=TransportConfig(clients_per_task=per_task),
        )
    for result in results.values():
        assert list(result.excluded_sites) == ["hungary"]
        assert [h["sites/dropped"] for h in load_checkpoint(result.federation_id)[0].history] == [1.0, 1.0]
    one, batched = load_checkpoint("one")[1], load_checkpoint("batched")[1]
    for name in one:
        np.testing.assert_array_equal(one[name], batched[name])
    assert results["one"].per_site == results["batched"].per_site


def test_tracking_jobs_after_a_failure_do_not_run() -> None:
    import pytest

    from flows.background import InOrder

    ran: list[int] = []

    def job(i: int) -> None:
        if i == 1:
            raise ValueError("registration failed")
        ran.append(i)

    queue = InOrder()
    queue.submit(job, 0)
    queue.submit(job, 1)
    queue.submit(job, 2)
    with pytest.raises(ValueError, match="registration failed"):
        queue.close()
    assert ran == [0]


def test_auto_batching_keeps_one_site_per_task_up_to_four_sites() -> None:
    import math
    import os

    import pytest
    from pydantic import ValidationError

    auto = TransportConfig()
    assert auto.clients_per_task == "auto"
    cores = os.cpu_count() or 1
    assert [auto.sites_per_task(k) for k in (1, 4)] == [1, 1]
    for sites in (5, 10, 100, 1000):
        per_task = auto.sites_per_task(sites)  # the smallest batch that needs no more tasks than cores
        assert math.ceil(sites / per_task) <= cores
        assert per_task == 1 or math.ceil(sites / (per_task - 1)) > cores
    assert TransportConfig(clients_per_task=7).sites_per_task(1000) == 7
    with pytest.raises(ValidationError, match="clients_per_task"):
        TransportConfig(clients_per_task=0)
