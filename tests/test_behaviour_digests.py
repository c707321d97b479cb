"""Fixed-seed federations end with the very weights and metrics recorded before the round
protocol moved into the engine (`tests/behaviour_runs.py` says how they were recorded)."""

import json
from pathlib import Path

import pytest
from behaviour_runs import DIGESTS, RUNS, digests, engine_runner, flow_runner, write_extra_domains

RECORDED: dict[str, dict[str, str]] = json.loads(DIGESTS.read_text())


@pytest.fixture(scope="module")
def extra_domains(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("digest-domains")
    write_extra_domains(root)
    return root


def test_every_run_is_recorded() -> None:
    assert sorted(RECORDED) == sorted(RUNS)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_the_flow_reproduces_the_recorded_run(
    name: str, extra_domains: Path, prefect_api: None, mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDFLOW_DOMAINS_PATH", str(extra_domains))
    assert digests(flow_runner, [name]) == {name: RECORDED[name]}


# 100 agents validating one by one, and a language model: too slow for the fast lane.
SLOW_ALONE = {"telecom-100-clients", "language-1-round"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW_ALONE else []) for n in sorted(RUNS)]
)
def test_the_engine_alone_reproduces_the_recorded_run(
    name: str, extra_domains: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver with site agents in this process: no Prefect, no MLflow, the same federation."""
    monkeypatch.setenv("FEDFLOW_DOMAINS_PATH", str(extra_domains))
    assert digests(engine_runner, [name]) == {name: RECORDED[name]}
