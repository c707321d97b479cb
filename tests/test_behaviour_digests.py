"""Fixed-seed federations end with the very weights and metrics recorded before the round
protocol moved into the engine (`tests/behaviour_runs.py` says how they were recorded).

Digests are exact, so they are kept per machine kind (CPU, architecture, torch): on a kind with
a record, the flow and the engine must both reproduce it; on a kind without one, the flow must
still equal the engine run on the spot, and the engine is compared with the other kinds' records."""

from pathlib import Path

import pytest
from behaviour_runs import (
    RUNS,
    digests,
    engine_runner,
    flow_runner,
    machine_kind,
    recorded_digests,
    write_extra_domains,
)

RECORDED = recorded_digests()
KIND = machine_kind()


@pytest.fixture(scope="module")
def extra_domains(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("digest-domains")
    write_extra_domains(root)
    return root


def test_every_run_is_recorded_for_every_machine_kind() -> None:
    assert RECORDED, "no digests recorded"
    for kind, runs in RECORDED.items():
        assert sorted(runs) == sorted(RUNS), kind


@pytest.mark.parametrize("name", sorted(RUNS))
def test_the_flow_reproduces_the_recorded_run(
    name: str, extra_domains: Path, prefect_api: None, mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDFLOW_DOMAINS_PATH", str(extra_domains))
    found = digests(flow_runner, [name])
    if KIND in RECORDED:
        assert found == {name: RECORDED[KIND][name]}
    else:  # no record for this CPU: the Prefect flow must still do exactly what the engine does
        assert found == digests(engine_runner, [name])


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
    found = digests(engine_runner, [name])[name]
    if KIND in RECORDED:
        assert found == RECORDED[KIND][name]
    elif found not in [runs[name] for runs in RECORDED.values()]:
        pytest.skip(
            f"no digests recorded for this machine kind ({KIND}); kinds recorded: {sorted(RECORDED)}. "
            "The flow test still checks the flow against the engine here; record this kind from a "
            "known commit with `python tests/behaviour_runs.py --record`."
        )
