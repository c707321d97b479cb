"""Fixed-seed federations end with the very weights and metrics recorded before the round
protocol moved into the engine (`tests/behaviour_runs.py` says how they were recorded)."""

import json
from pathlib import Path

import pytest
from behaviour_runs import DIGESTS, RUNS, digests, flow_runner, write_extra_domains

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
