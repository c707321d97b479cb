"""Cross-silo against simulation: the same healthcare federation over served sites and in one process.

    .venv/bin/python benchmarks/cross_silo_benchmark.py [--rounds 3] [--out FILE]

Starts a real `prefect server start` on 127.0.0.1 (telemetry off, a temporary PREFECT_HOME), four
`fedflow site serve` processes that each see only their own folder (data, state, policy), and
runs the coordinator here: after a one-round warm-up (the MLflow store is created, imports are
done), the federation in simulation, then through the sites' deployments (each site's warm
standby session claimed), then cross-silo again with one site killed after round 1. The per-call
overhead is each coordinator call's duration minus the site's own work on it, both read back
from the Prefect API's task runs (`site-remote-call` at the coordinator, `site-answer` at the
site). `--out FILE` writes the results as JSON.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent
SITES = ["cleveland", "hungary", "switzerland", "va_long_beach"]
KILLED = "hungary"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(check, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # the server is still starting
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {seconds} s")


def _start(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:  # type: ignore[type-arg]
    with open(log, "wb") as handle:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(processes: list[subprocess.Popen]) -> None:  # type: ignore[type-arg]
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _serve(site: str, root: Path, env: dict[str, str]) -> subprocess.Popen:  # type: ignore[type-arg]
    from domains import load_domain

    folder = root / f"site-{site}"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy(load_domain("healthcare").site_path(site), folder / "data" / "records.csv")
    (folder / "policy.yaml").write_text("split_seed: 5\nholdout_fraction: 0.25\n")
    command = [
        str(BIN / "fedflow"), "site", "serve", "--domain", "healthcare", "--site", site,
        "--data", str(folder / "data" / "records.csv"), "--state-dir", str(folder / "state"),
        "--exchange", str(root / "exchange"), "--policy", str(folder / "policy.yaml"),
    ]  # fmt: skip
    return _start(command, folder, env, root / f"{site}.log")


def _federation(rounds: int, name: str, cross_silo: bool, exchange: Path) -> float:
    from fedflow.config import FederationConfig
    from flows.coordinator import SiteSelection, federated_training
    from flows.transport import TransportConfig

    transport = (
        TransportConfig(mode="cross-silo", exchange_url=str(exchange), liveness_timeout_s=5)
        if cross_silo
        else TransportConfig()
    )
    config = FederationConfig(rounds=rounds, seed=5, audit=False)
    started = time.perf_counter()
    federated_training(
        domain="healthcare",
        federation=config,
        run_name=name,
        sites=SiteSelection(names=SITES),
        transport=transport,
    )
    return time.perf_counter() - started


def _kill_after_round_one(process: subprocess.Popen, run_name: str) -> threading.Thread:  # type: ignore[type-arg]
    """Kill `process` once the run's round-1 checkpoint exists."""
    from fedflow.checkpoint import checkpoint_dir

    def watch() -> None:
        while process.poll() is None:
            if (checkpoint_dir(run_name) / "state.json").exists():  # round 1 is complete
                os.killpg(process.pid, signal.SIGKILL)
                return
            time.sleep(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _standbys_ready(exchange: Path) -> float:
    """Seconds until every site has a warm standby session (each site's serve process starts one)."""
    from flows.exchange import Exchange

    started = time.perf_counter()
    _wait_until(
        lambda: all(Exchange(str(exchange)).standby_sessions(site) for site in SITES), 300, "standby sessions"
    )
    return time.perf_counter() - started


def _overhead(api: str) -> dict[str, dict[str, float]]:
    """Per operation: median coordinator call time, median site work, and their difference, over
    the completed calls of the cross-silo run (prepare includes starting the site's session)."""
    import statistics

    import httpx

    body = {"limit": 200, "sort": "EXPECTED_START_TIME_ASC"}
    found = httpx.post(f"{api}/task_runs/filter", json=body, timeout=30).json()

    def by_operation(task: str) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for run in found:
            if run["task_key"].startswith(task) and run["state_type"] == "COMPLETED":
                out.setdefault(run["name"].split("-")[0], []).append(float(run["total_run_time"]))
        return out

    calls, work = by_operation("remote_site_call"), by_operation("answer_call")
    return {
        operation: {
            "calls": len(times),
            "median_call_s": statistics.median(times),
            "median_site_work_s": statistics.median(work.get(operation, [0.0])),
            "overhead_s": statistics.median(times) - statistics.median(work.get(operation, [0.0])),
        }
        for operation, times in calls.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fedflow-cross-silo-"))
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(root / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    os.environ.update(
        {k: env[k] for k in ("PREFECT_HOME", "PREFECT_API_URL", "PREFECT_SERVER_ANALYTICS_ENABLED")}
    )
    os.environ["FEDFLOW_STATE_DIR"] = str(root / "coordinator" / "state")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["FEDFLOW_ARTIFACT_ROOT"] = str(root / "artifacts")
    processes = [
        _start(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            root,
            env,
            root / "server.log",
        )
    ]
    try:
        import httpx

        _wait_until(
            lambda: httpx.get(f"{api}/health", timeout=2).status_code == 200, 120, "the Prefect server"
        )
        sites = {site: _serve(site, root, env) for site in SITES}
        processes += list(sites.values())
        names = [f"fedflow-site/healthcare-{site}" for site in SITES]
        _wait_until(
            lambda: all(
                httpx.get(f"{api}/deployments/name/{n}", timeout=2).status_code == 200 for n in names
            ),
            120,
            "the site deployments",
        )
        import flows  # noqa: F401

        results: dict[str, object] = {"rounds": args.rounds, "cpus": os.cpu_count()}
        # The coordinator's first federation creates the MLflow store and imports everything: not
        # what either mode costs, so a one-round simulation goes first.
        results["warm_up_s"] = _federation(1, "bench-warm-up", False, root / "exchange")
        results["simulation_s"] = _federation(args.rounds, "bench-simulation", False, root / "exchange")
        results["sites_ready_s"] = _standbys_ready(root / "exchange")
        results["cross_silo_s"] = _federation(args.rounds, "bench-cross-silo", True, root / "exchange")
        results["overhead"] = _overhead(api)
        _standbys_ready(root / "exchange")
        _kill_after_round_one(sites[KILLED], "bench-killed")
        results["cross_silo_one_killed_s"] = _federation(args.rounds, "bench-killed", True, root / "exchange")
        print(json.dumps(results, indent=1))
        if args.out:
            args.out.write_text(json.dumps(results, indent=1))
    finally:
        _stop(processes)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
