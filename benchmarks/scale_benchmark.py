"""Seconds per round and peak memory for 10 to 10,000 simulated clients (cross-device style).

Each K runs in its own process: a temporary copy of the telecom domain whose table is tiled
(copies of its 7,043 rows, so that every client has at least 4 rows) and cut IID into K
simulated clients, every client in every round, FedAvg, one local epoch, half of each client's
rows held out for federated evaluation. Sites are handled `--clients-per-task` at a time per
Prefect task (default: the flow's 'auto', K / 4), with one GX validation per batch. The full pipeline
runs: Prefect, GX, MLflow logging and one registered version per round; `--task-runner dask`
runs the site tasks in a local Dask cluster (one worker process per core). Reported: seconds per
round (rounds 2..R), seconds to validate and prepare all clients, peak PSS of the process tree.

    .venv/bin/python benchmarks/scale_benchmark.py --clients 10,100,1000,10000 --rounds 3 \
        [--figure benchmarks/figures/scale.png]

Rows are repeated across clients when the table is tiled: this measures the system, not the model.
"""

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
for _handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
    os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{_handler}_LEVEL", "WARNING")


def one(clients: int, rounds: int, per_task: int | str, task_runner: str, out: Path) -> None:
    """Run one federation of `clients` simulated clients in this process and write its figures."""
    import pandas as pd
    import torch
    import yaml
    from process_memory import MemorySampler
    from stores import temporary_stores

    sampler = MemorySampler(interval=0.2)
    sampler.start()
    torch.set_num_threads(1)
    with temporary_stores(domains=True) as root:
        folder = root / "domains" / f"scale_{clients}"
        shutil.copytree(
            HERE.parent / "domains" / "telecom", folder, ignore=shutil.ignore_patterns("__pycache__")
        )
        table = pd.read_csv(folder / "data" / "telco_churn.csv", dtype=str)
        copies = max(1, math.ceil(4 * clients / len(table)))
        pd.concat([table] * copies, ignore_index=True).to_csv(folder / "data" / "tiled.csv", index=False)
        config = yaml.safe_load((folder / "config.yaml").read_text())
        config["name"] = folder.name
        config["partition"] = {"source": "data/tiled.csv", "method": "iid", "num_sites": clients, "seed": 0}
        config["quality"] = {"min_rows": 2}
        config["federation"].update(
            {
                "rounds": rounds,
                "min_sites": 1,
                "min_sites_per_round": clients,
                "holdout_fraction": 0.5,
                "audit": False,
            }
        )
        (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

        from fedflow.checkpoint import load_checkpoint
        from flows.coordinator import federated_training
        from flows.task_runners import TaskRunnerConfig, site_task_runner
        from flows.transport import TransportConfig

        transport = TransportConfig(clients_per_task=per_task)
        flow_started = time.perf_counter()
        coordinator = federated_training
        if task_runner != "threads":
            runner = site_task_runner(TaskRunnerConfig.model_validate({"kind": task_runner}))
            coordinator = federated_training.with_options(task_runner=runner)
        result = coordinator(
            domain=folder.name,
            run_name=f"scale-{clients}",
            transport=transport,
        )
        flow_seconds = time.perf_counter() - flow_started
        history = load_checkpoint(result.federation_id)[0].history
    sampler.stop()
    seconds = [h["time/round_seconds"] for h in history]
    later = seconds[1:] or seconds
    figures = {
        "clients": clients,
        "clients_per_task": transport.sites_per_task(clients),
        "task_runner": task_runner,
        "rounds": rounds,
        "seconds_per_round": sum(later) / len(later),
        "preparation_seconds": flow_seconds - sum(seconds),
        "flow_seconds": flow_seconds,
        "wall_seconds": time.perf_counter() - STARTED,
        "peak_memory_mb": sampler.peak_pss / 2**20,
        "participants": history[-1]["sites/participants"],
        "roc_auc": result.final_metrics.get("roc_auc", math.nan),
    }
    out.write_text(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default="10,100,1000,10000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients-per-task", type=int, default=0, help="0: the flow's 'auto' (K / cores)")
    parser.add_argument(
        "--task-runner", default="threads", help="threads, or dask (a local cluster, one worker per core)"
    )
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument(
        "--rows",
        default=None,
        help="table and figure from rows saved earlier (files of the JSON lines printed to stderr), no runs",
    )
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        one(args.one, args.rounds, args.clients_per_task or "auto", args.task_runner, args.out)
        return
    rows = []
    if args.rows:
        for name in args.rows.split(","):
            lines = Path(name).read_text().splitlines()
            rows += [json.loads(line) for line in lines if line.startswith("{")]
    for clients in [] if args.rows else (int(k) for k in args.clients.split(",")):
        out = Path(f"/tmp/fedflow-scale-{os.getpid()}-{clients}.json")
        command = [
            sys.executable,
            __file__,
            "--one",
            str(clients),
            "--rounds",
            str(args.rounds),
            "--out",
            str(out),
            "--task-runner",
            args.task_runner,
        ]
        if args.clients_per_task:
            command += ["--clients-per-task", str(args.clients_per_task)]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=7200)
        if completed.returncode != 0:
            sys.exit(f"K={clients} failed:\n{completed.stderr[-3000:]}")
        rows.append(json.loads(out.read_text()))
        out.unlink()
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(
        "| clients | task runner | per task | s / round | s outside rounds 2..R | peak memory MB (PSS) "
        "| wall s | ROC AUC |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['clients']:,} | {r['task_runner']} | {r['clients_per_task']} | "
            f"{r['seconds_per_round']:.2f} | "
            f"{r['preparation_seconds']:.1f} | {r['peak_memory_mb']:.0f} | {r['wall_seconds']:.1f} | "
            f"{r['roc_auc']:.3f} |"
        )
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(5, 3.5))
        for number, runner in enumerate(dict.fromkeys(r.get("task_runner", "threads") for r in rows)):
            mine = sorted(
                (r for r in rows if r.get("task_runner", "threads") == runner), key=lambda r: r["clients"]
            )
            ks = [r["clients"] for r in mine]
            per_round = [r["seconds_per_round"] for r in mine]
            axis.loglog(ks, per_round, "o-", label=f"fedflow ({runner} task runner)")
            if number == 0:
                linear = [per_round[0] * k / ks[0] for k in ks]
                axis.loglog(ks, linear, "--", color="grey", label=f"linear from K = {ks[0]}")
        axis.set_xlabel("simulated clients per round")
        axis.set_ylabel("seconds per round")
        axis.legend()
        figure.tight_layout()
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.figure, dpi=120)


if __name__ == "__main__":
    main()
