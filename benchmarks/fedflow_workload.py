"""fedflow side of the Flower side-by-side benchmark: the same workload, the full pipeline.

The workload of `benchmarks/flower/workload.py` (breast cancer, the same Dirichlet(0.5)
partition of the same training rows over K clients, MLP 30 -> 64 -> 2, SGD lr 0.05 without
momentum, batch 32, one local epoch, FedAvg over all K clients, R rounds) as a fedflow domain
with one site per client (the flow's 'auto' sites per Prefect task by default), run by the real
`federated_training` flow: Prefect (its temporary
local API), GX validation of every client's file, MLflow logging and one registered model
version per round. Clients train on all their rows (`holdout_fraction: 0`); the final global
model is scored on the workload's 20 % test split, like Flower's.

    .venv/bin/python benchmarks/fedflow_workload.py --clients 10 --rounds 20 --seed 0 --json out.json

Wall time counts the whole process from its first line; peak memory is the process tree's
(this process and Prefect's temporary server), sampled every 0.2 s.
"""

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE / "flower")]
for _handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
    os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{_handler}_LEVEL", "WARNING")

from process_memory import MemorySampler  # noqa: E402

FEATURES = [f"x{i:02d}" for i in range(30)]


def write_domain(root: Path, clients: int, rounds: int, seed: int) -> str:
    """A domain folder with one CSV per client, from the workload's own partition."""
    import pandas as pd
    import yaml
    from workload import client_data

    name = f"sbs_k{clients}"
    folder = root / name
    (folder / "data").mkdir(parents=True)
    shutil.copy(HERE.parent / "domains" / "healthcare" / "model.py", folder / "model.py")
    sites = {}
    for client in range(clients):
        x, y = client_data(client, clients, seed)
        frame = pd.DataFrame(x, columns=FEATURES)
        frame["diagnosis"] = ["malignant" if label == 0 else "benign" for label in y]
        site = f"client_{client:05d}"
        frame.to_csv(folder / "data" / f"{site}.csv", index=False)
        sites[site] = f"data/{site}.csv"
    config = {
        "name": name,
        "description": "scikit-learn breast cancer, Dirichlet(0.5) over clients (side-by-side benchmark)",
        "task": "multiclass",
        "target": {"column": "diagnosis", "classes": ["malignant", "benign"]},
        "numeric": [{"name": f, "min": -50, "max": 50} for f in FEATURES],
        "categorical": [],
        "sites": sites,
        "model": {"hidden": [64]},
        "quality": {"min_rows": 1},
        "federation": {
            "rounds": rounds,
            "seed": seed,
            "min_sites": 1,
            "min_sites_per_round": clients,
            "holdout_fraction": 0.0,
            "audit": False,
            "local": {
                "epochs": 1,
                "batch_size": 32,
                "learning_rate": 0.05,
                "optimizer": "sgd",
                "momentum": 0.0,
            },
            "strategy": {"name": "fedavg"},
        },
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (folder / "schema.py").write_text(
        '"""Generic checks only."""\n\nfrom fedflow.domain import DomainSpec\n'
        "from fedflow.expectations import Expectation, expectations_from_spec\n\n\n"
        "def expectations(spec: DomainSpec) -> list[Expectation]:\n"
        '    """The checks from config.yaml."""\n'
        "    return expectations_from_spec(spec)\n"
    )
    return name


def test_accuracy(domain_name: str, federation_id: str, seed: int) -> float:
    """The final global model's accuracy on the workload's 20 % test split."""
    import numpy as np
    import pandas as pd
    import torch
    from workload import load_split

    from domains import load_domain
    from fedflow.checkpoint import load_checkpoint
    from fedflow.params import set_weights

    checkpoint, weights, _ = load_checkpoint(federation_id)
    domain = load_domain(domain_name)
    data = load_split(seed)
    frame = pd.DataFrame(data.x_test, columns=FEATURES)
    features = checkpoint.preprocessor.transform(frame)
    model = domain.build_model(input_dim=features.shape[1], output_dim=2, **domain.spec.model)
    set_weights(model, weights)
    model.train(False)
    with torch.no_grad():
        predicted = (
            model(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))).argmax(1).numpy()
        )
    # Class order of the domain: malignant (0), benign (1), as in scikit-learn's labels.
    return float((predicted == data.y_test).mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument(
        "--clients-per-task", type=int, default=0, help="sites per Prefect task (0: the flow's 'auto')"
    )
    args = parser.parse_args()
    sampler = MemorySampler(interval=0.2)
    sampler.start()
    import flows  # noqa: F401  (as `fedflow run` does: telemetry off, then the API warm-up)
    from flows.api_warmup import api_ready, warm_up_api

    warm_up_api()
    from stores import temporary_stores

    with temporary_stores(domains=True) as root:
        import torch

        torch.set_num_threads(1)
        domain_name = write_domain(root / "domains", args.clients, args.rounds, args.seed)
        from fedflow.checkpoint import load_checkpoint
        from flows.coordinator import federated_training
        from flows.transport import TransportConfig

        api_ready()
        flow_started = time.perf_counter()
        transport = TransportConfig(clients_per_task=args.clients_per_task or "auto")
        per_task = transport.sites_per_task(args.clients)
        result = federated_training(
            domain=domain_name,
            run_name=f"sbs-{args.clients}x{args.rounds}",
            transport=transport,
        )
        flow_seconds = time.perf_counter() - flow_started
        history = load_checkpoint(result.federation_id)[0].history
        accuracy = test_accuracy(domain_name, result.federation_id, args.seed)
        received = sum(h["network/bytes_received"] for h in history) / len(history)
        seconds = [h["time/round_seconds"] for h in history]
    sampler.stop()
    out = {
        "framework": "fedflow",
        "clients": args.clients,
        "rounds": args.rounds,
        "seed": args.seed,
        "wall_seconds": time.perf_counter() - STARTED,
        "flow_seconds": flow_seconds,
        "round_seconds_mean_after_first": sum(seconds[1:]) / max(len(seconds) - 1, 1),
        "peak_memory_mb": sampler.peak_pss / 2**20,
        "peak_rss_sum_mb": sampler.peak_rss / 2**20,
        "test_accuracy": accuracy,
        "bytes_per_round_per_client": received / args.clients,
        "rounds_completed": result.rounds_completed,
        "clients_per_task": per_task,
    }
    args.json.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
