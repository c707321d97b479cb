"""Cross-silo end to end: a real `prefect server start`, three site processes that each see only
their own data folder, and a coordinator process. Every process started here is stopped here."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from domains import load_domain

SERVED = ["cleveland", "hungary", "switzerland"]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check, seconds: float, what: str, processes: list[subprocess.Popen]) -> None:  # type: ignore[no-untyped-def,type-arg]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"a process exited while waiting for {what}: {process.args}")
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {seconds} s")


def _stop(processes: list[subprocess.Popen]) -> None:  # type: ignore[type-arg]
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path]]:
    """`prefect server start` on 127.0.0.1 with a temporary PREFECT_HOME, stopped at the end."""
    root = tmp_path_factory.mktemp("cross-silo")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(root / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(root / "server.log", "wb") as log:
        server = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait(
                lambda: httpx.get(f"{api}/health", timeout=2).status_code == 200,
                120,
                "the Prefect server",
                [server],
            )
            yield env, root
        finally:
            _stop([server])
    assert server.poll() is not None


@pytest.fixture
def consortium(
    prefect_server, tmp_path: Path
) -> Iterator[tuple[dict[str, str], Path, list[subprocess.Popen]]]:  # type: ignore[no-untyped-def,type-arg]
    """Three served sites, each with only its own data folder, on the module's Prefect server."""
    env, _ = prefect_server
    api = env["PREFECT_API_URL"]
    processes: list[subprocess.Popen] = []  # type: ignore[type-arg]
    domain = load_domain("healthcare")
    try:
        for site in SERVED:
            folder = tmp_path / f"site-{site}"
            (folder / "data").mkdir(parents=True)
            shutil.copy(domain.site_path(site), folder / "data" / "records.csv")
            # The site's own split: the simulation's for seed 5, so the two runs can be compared bit for bit.
            (folder / "policy.yaml").write_text("split_seed: 5\nholdout_fraction: 0.25\n")
            with open(tmp_path / f"{site}.log", "wb") as log:
                processes.append(
                    subprocess.Popen(
                        [
                            str(BIN / "fedflow"),
                            "site",
                            "serve",
                            "--domain",
                            "healthcare",
                            "--site",
                            site,
                            "--data",
                            str(folder / "data" / "records.csv"),
                            "--state-dir",
                            str(folder / "state"),
                            "--exchange",
                            str(tmp_path / "exchange"),
                            "--policy",
                            str(folder / "policy.yaml"),
                        ],
                        cwd=folder,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )

        def deployed() -> bool:
            names = [f"fedflow-site/healthcare-{site}" for site in SERVED]
            return all(
                httpx.get(f"{api}/deployments/name/{name}", timeout=2).status_code == 200 for name in names
            )

        _wait(deployed, 120, "the site deployments", processes)
        yield env, tmp_path, processes
    finally:
        _stop(processes)
    assert all(process.poll() is not None for process in processes)


def test_three_sites_on_their_own_processes_match_the_simulation(consortium) -> None:  # type: ignore[no-untyped-def]
    env, root, processes = consortium
    out = root / "coordinator-out"
    out.mkdir()
    coordinator_env = {
        **env,
        "FEDFLOW_STATE_DIR": str(root / "coordinator" / "state"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'coordinator' / 'mlflow.db'}",
        "FEDFLOW_ARTIFACT_ROOT": str(root / "coordinator" / "artifacts"),
    }
    (root / "coordinator").mkdir()
    script = Path(__file__).with_name("cross_silo_coordinator.py")
    completed = subprocess.run(
        [sys.executable, str(script), str(out), str(root / "exchange")],
        cwd=root / "coordinator",
        env=coordinator_env,
        capture_output=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr.decode()[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["rounds"] == 2 and result["simulation_rounds"] == 2
    assert list(result["excluded"]) == ["va_long_beach"]  # never served: excluded, and the run went on
    assert result["participants"] == [3.0, 3.0]
    weights = np.load(out / "weights.npz")
    names = [k.split("/", 1)[1] for k in weights.files if k.startswith("cross-silo/")]
    assert names
    for name in names:
        np.testing.assert_array_equal(
            weights[f"cross-silo/{name}"], weights[f"simulation/{name}"], err_msg=name
        )
    # The coordinator never opened a site's data folder, and no site path reached the exchange.
    site_folders = [str(root / f"site-{site}") for site in SERVED]
    assert result["opened"], "the audit hook recorded nothing"
    assert not [path for path in result["opened"] if any(path.startswith(f) for f in site_folders)]
    for message in (root / "exchange").rglob("*.json"):
        text = message.read_text()
        assert not any(folder in text for folder in site_folders), message
    # Every process this test started is still ours to stop (none died on its own).
    assert all(process.poll() is None for process in processes)


def test_prefect_yaml_deploys_every_deployment(prefect_server) -> None:  # type: ignore[no-untyped-def]
    env, _ = prefect_server
    repo = Path(__file__).resolve().parents[1]
    pools = [
        "fedflow-coordinator",
        *(f"fedflow-site-{site}" for site in load_domain("healthcare").spec.site_names),
    ]
    for pool in pools:
        subprocess.run(
            [str(BIN / "prefect"), "work-pool", "create", pool, "--type", "process"],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    completed = subprocess.run(
        [
            str(BIN / "prefect"),
            "--no-prompt",
            "deploy",
            "--prefect-file",
            "deployments/prefect.yaml",
            "--all",
        ],
        cwd=repo,
        env={**env, "FEDFLOW_HOME": str(repo)},
        capture_output=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout.decode()[-3000:]
    api = env["PREFECT_API_URL"]
    expected = [
        "federated-training/healthcare",
        "federated-training/finance",
        "federated-training/retail",
        "federated-training/language",
        "federated-training/healthcare-continual",
        *(f"fedflow-site/healthcare-{site}" for site in load_domain("healthcare").spec.site_names),
    ]
    found = {name: httpx.get(f"{api}/deployments/name/{name}", timeout=10) for name in expected}
    assert {name: r.status_code for name, r in found.items()} == dict.fromkeys(expected, 200)
    continual = found["federated-training/healthcare-continual"].json()
    parameters = continual["parameters"]
    assert parameters["start_from"] == "champion" and parameters["overrides"] == {"rounds": 5}
    assert continual["parameters"]["transport"]["mode"] == "cross-silo"
    assert continual["work_pool_name"] == "fedflow-coordinator"
    assert [s["schedule"]["cron"] for s in continual["schedules"]] == ["0 3 * * 1"]
    assert found["fedflow-site/healthcare-hungary"].json()["work_pool_name"] == "fedflow-site-hungary"

    # A site whose pool has no worker never runs: the call gives up at the round timeout.
    late = subprocess.run(
        [sys.executable, "-c", _LATE_SITE_CALL], env=env, capture_output=True, timeout=300, cwd=repo
    )
    assert b"did not finish evaluate within 3 s" in late.stdout, late.stderr.decode()[-2000:]


_LATE_SITE_CALL = """
import flows
from prefect import flow
from fedflow.config import LocalTrainConfig
from fedflow.messages import EvaluateRequest, SiteRows
from fedflow.tabular import Preprocessor
from flows.transport import SiteCallError, TransportConfig, remote_site_call

@flow
def call():
    rows = SiteRows(holdout_fraction=0.25, seed=0, preprocessor=Preprocessor(numeric=[], categorical=[]))
    request = EvaluateRequest(
        federation_id="late", round=1, rows=rows, global_payload=b"", local=LocalTrainConfig()
    )
    transport = TransportConfig(mode="cross-silo", round_timeout_s=3, poll_interval_s=0.5)
    try:
        remote_site_call.fn("healthcare", "hungary", request, transport, "evaluate-hungary")
    except SiteCallError as error:
        print(error)

call()
"""
