"""Cross-silo end to end: a real `prefect server start`, four `fedflow site serve` processes that each
see only their own data and key folders, and a coordinator process, with authentication required.
One site signs with a key the coordinator never registered; in another run one site is killed
mid-run. Every process started here is stopped here."""

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


SITES = ["cleveland", "hungary", "switzerland", "va_long_beach"]
BAD_KEY = "va_long_beach"  # signs with a key the coordinator never registered
KILLED = "hungary"


def _keys(root: Path) -> None:
    """The coordinator's folder: coordinator.key and each site's registered .pub; each site's: its own
    key and coordinator.pub. va_long_beach's registered .pub is not its key's."""
    from fedflow.signing import COORDINATOR, create_site_keys

    coordinator = root / "coordinator" / "keys"
    create_site_keys(coordinator, COORDINATOR)
    for site in SITES:
        own = root / f"site-{site}" / "keys"
        create_site_keys(own, site)
        shutil.copy(coordinator / f"{COORDINATOR}.pub", own)
        registered = own / f"{site}.pub"
        if site == BAD_KEY:
            create_site_keys(root / "impostor", site)
            registered = root / "impostor" / f"{site}.pub"
        shutil.copy(registered, coordinator / f"{site}.pub")


def _serve(site: str, root: Path, env: dict[str, str]) -> subprocess.Popen:  # type: ignore[type-arg]
    """`fedflow site serve` for one site, in its own folder, seeing only its own data and keys."""
    folder = root / f"site-{site}"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy(load_domain("healthcare").site_path(site), folder / "data" / "records.csv")
    # The site's own split: the simulation's for seed 5, so the two runs can be compared bit for bit.
    (folder / "policy.yaml").write_text(
        "split_seed: 5\nholdout_fraction: 0.25\nrequire_authentication: true\n"
    )
    command = [
        str(BIN / "fedflow"), "site", "serve", "--domain", "healthcare", "--site", site,
        "--data", str(folder / "data" / "records.csv"), "--state-dir", str(folder / "state"),
        "--keys-dir", str(folder / "keys"), "--exchange", str(root / "exchange"),
        "--policy", str(folder / "policy.yaml"),
    ]  # fmt: skip
    with open(root / f"{site}.log", "wb") as log:
        return subprocess.Popen(
            command,
            cwd=folder,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture
def consortium(
    prefect_server, tmp_path: Path
) -> Iterator[tuple[dict[str, str], Path, dict[str, subprocess.Popen]]]:  # type: ignore[no-untyped-def,type-arg]
    """Four served sites, each with only its own data and key folders, on the module's Prefect server."""
    env, _ = prefect_server
    api = env["PREFECT_API_URL"]
    _keys(tmp_path)
    processes: dict[str, subprocess.Popen] = {}  # type: ignore[type-arg]
    try:
        for site in SITES:
            processes[site] = _serve(site, tmp_path, env)

        def deployed() -> bool:
            names = [f"fedflow-site/healthcare-{site}" for site in SITES]
            return all(
                httpx.get(f"{api}/deployments/name/{name}", timeout=2).status_code == 200 for name in names
            )

        _wait(deployed, 120, "the site deployments", list(processes.values()))
        # Each site's warm standby session: a federation started earlier would start sessions of its
        # own while the standbys are still spawning (eight Python processes starting at once).
        from flows.exchange import Exchange

        exchange = Exchange(str(tmp_path / "exchange"))
        _wait(
            lambda: all(exchange.standby_sessions(site) for site in SITES),
            240,
            "the sites' standby sessions",
            list(processes.values()),
        )
        yield env, tmp_path, processes
    finally:
        _stop(list(processes.values()))
    assert all(process.poll() is not None for process in processes.values())


def _coordinator(root: Path, env: dict[str, str], scenario: str, *extra: str) -> subprocess.Popen:  # type: ignore[type-arg]
    out = root / "coordinator-out"
    out.mkdir(exist_ok=True)
    coordinator_env = {
        **env,
        "FEDFLOW_STATE_DIR": str(root / "coordinator" / "state"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'coordinator' / 'mlflow.db'}",
        "FEDFLOW_ARTIFACT_ROOT": str(root / "coordinator" / "artifacts"),
        "PYTHONUNBUFFERED": "1",
    }
    script = Path(__file__).with_name("cross_silo_coordinator.py")
    return subprocess.Popen(
        [
            sys.executable,
            str(script),
            scenario,
            str(out),
            str(root / "exchange"),
            str(root / "coordinator" / "keys"),
            *extra,
        ],
        cwd=root / "coordinator",
        env=coordinator_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _finish(coordinator: subprocess.Popen, root: Path) -> tuple[dict, str]:  # type: ignore[type-arg]
    """The coordinator's result and its output (read to its end)."""
    assert coordinator.stdout is not None
    lines = []
    for raw in coordinator.stdout:
        line = raw.decode(errors="replace")
        lines.append(line)
    code = coordinator.wait(timeout=900)
    output = "".join(lines)
    assert code == 0, output[-4000:]
    return json.loads((root / "coordinator-out" / "result.json").read_text()), output


def test_four_served_sites_one_with_a_bad_key_match_the_simulation(consortium) -> None:  # type: ignore[no-untyped-def]
    env, root, processes = consortium
    result, _ = _finish(_coordinator(root, env, "bad-key"), root)
    assert result["rounds"] == 2 and result["simulation_rounds"] == 2
    # The site signing with an unregistered key is excluded at preparation, named, with its key file.
    (reason,) = result["excluded"][BAD_KEY]
    assert BAD_KEY in reason and "key" in reason, reason
    assert result["participants"] == [3.0, 3.0]
    weights = np.load(root / "coordinator-out" / "weights.npz")
    names = [k.split("/", 1)[1] for k in weights.files if k.startswith("cross-silo/")]
    assert names
    for name in names:
        np.testing.assert_array_equal(
            weights[f"cross-silo/{name}"], weights[f"simulation/{name}"], err_msg=name
        )
    # The coordinator never opened a site's data folder, and no site path reached the exchange.
    site_folders = [str(root / f"site-{site}") for site in SITES]
    assert result["opened"], "the audit hook recorded nothing"
    assert not [path for path in result["opened"] if any(path.startswith(f) for f in site_folders)]
    for message in (root / "exchange").rglob("*.json"):
        text = message.read_text()
        assert not any(folder in text for folder in site_folders), message
    # Replies are sealed to the coordinator: a reader of the exchange sees no statistic or metric.
    responses = list((root / "exchange").rglob("response.json"))
    assert responses
    for response in responses:
        text = response.read_text()
        assert "num_examples" not in text and "roc_auc" not in text and "ciphertext" in text, response
    # Each site's messages live under its own prefix of the exchange.
    assert {
        path.relative_to(root / "exchange").parts[0] for path in (root / "exchange").rglob("*.json")
    } <= set(SITES)
    assert all(process.poll() is None for process in processes.values())


def test_a_site_killed_mid_run_is_left_out_in_seconds_not_the_round_timeout(consortium) -> None:  # type: ignore[no-untyped-def]
    env, root, processes = consortium
    started = time.monotonic()
    victim = processes[KILLED]
    result, output = _finish(_coordinator(root, env, "killed", str(victim.pid)), root)
    elapsed = time.monotonic() - started
    assert victim.wait(timeout=10) is not None  # it was killed
    assert result["rounds"] == 4
    participants = result["participants"]
    assert participants[0] == 3.0 and participants[-1] == 2.0, participants
    assert f"site {KILLED} is left out of the federation" in output
    assert result["attendance"][KILLED].startswith("round"), result["attendance"]
    # A dead site costs its liveness timeout (5 s here), never the round timeout (300 s here).
    assert elapsed < 300, elapsed


def test_prefect_yaml_deploys_only_the_coordinator(prefect_server) -> None:  # type: ignore[no-untyped-def]
    env, _ = prefect_server
    repo = Path(__file__).resolve().parents[1]
    subprocess.run(
        [str(BIN / "prefect"), "work-pool", "create", "fedflow-coordinator", "--type", "process"],
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
    ]
    found = {name: httpx.get(f"{api}/deployments/name/{name}", timeout=10) for name in expected}
    assert {name: r.status_code for name, r in found.items()} == dict.fromkeys(expected, 200)
    continual = found["federated-training/healthcare-continual"].json()
    parameters = continual["parameters"]
    assert parameters["start_from"] == "champion" and parameters["overrides"] == {"rounds": 5}
    assert continual["parameters"]["transport"]["mode"] == "cross-silo"
    assert continual["work_pool_name"] == "fedflow-coordinator"
    assert [s["schedule"]["cron"] for s in continual["schedules"]] == ["0 3 * * 1"]
    # No site deployment comes from the coordinator's file: sites serve their own.
    listed = httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()
    assert all(
        d["work_pool_name"] == "fedflow-coordinator"
        for d in listed
        if d["name"] in [e.split("/")[1] for e in expected]
    )
    site_flows = httpx.post(
        f"{api}/flows/filter", json={"flows": {"name": {"any_": ["fedflow-site"]}}}, timeout=10
    )
    site_ids = {f["id"] for f in site_flows.json()}
    assert not [d for d in listed if d["flow_id"] in site_ids and d.get("work_pool_name")]


def test_a_coordinator_whose_requests_reach_no_site_says_so(prefect_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env, _ = prefect_server
    completed = subprocess.run(
        [sys.executable, "-c", _NO_SITE_CALL, str(tmp_path / "exchange")],
        env=env, capture_output=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    out = completed.stdout.decode()
    # (finance: none of its sites was ever served on this server)
    assert "no request reached it" in out and "fedflow-site/finance-midwest" in out, (
        out + completed.stderr.decode()[-2000:]
    )
    assert "fedflow site serve --domain finance --site midwest" in out
    assert float(out.rsplit("after ", 1)[1].split()[0]) < 10  # at once, not at a timeout


_NO_SITE_CALL = """
import sys, time
import flows
from prefect import flow
from fedflow.messages import PrepareRequest
from flows.exchange import Exchange
from flows.site_sessions import SiteSession
from flows.transport import SiteUnreachableError, TransportConfig, remote_site_call

@flow
def call():
    transport = TransportConfig(mode="cross-silo", exchange_url=sys.argv[1])
    exchange = Exchange(sys.argv[1])
    session = SiteSession(domain="finance", site="midwest", exchange=exchange, transport=transport)
    started = time.monotonic()
    try:
        remote_site_call.fn(session.start(), PrepareRequest(federation_id="f", holdout_fraction=0.25, seed=0),
                            transport, "prepare-midwest")
    except SiteUnreachableError as error:
        print(error, f"after {time.monotonic() - started:.1f} s")

call()
"""
