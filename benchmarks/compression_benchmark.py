"""Uplink compression: bytes per round against hold-out ROC AUC, for every codec.

For heart disease (healthcare) and finance with their default rounds and local training, each
codec arm runs the full flow (Prefect, GX, MLflow) with the same seeds as the uncompressed
arm. Reported per arm: uplink bytes per round counted from the encoded payloads the sites
sent (safetensors headers included), the ratio to uncompressed, the mean over sites of
hold-out ROC AUC, and the AUC change against uncompressed paired by seed (mean ± sd).

    .venv/bin/python benchmarks/compression_benchmark.py --seeds 3 [--domains healthcare,finance]
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
for _handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
    os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{_handler}_LEVEL", "WARNING")

from stores import temporary_stores  # noqa: E402

from domains import load_domain  # noqa: E402
from fedflow.config import CompressionConfig  # noqa: E402

ARMS: list[tuple[str, dict[str, Any]]] = [
    ("none", {"codec": "none"}),
    ("fp16", {"codec": "fp16"}),
    ("int8 (stochastic)", {"codec": "int8"}),
    ("top-k 10 % + error feedback", {"codec": "topk", "options": {"fraction": 0.1}}),
    ("top-k 5 % + error feedback", {"codec": "topk", "options": {"fraction": 0.05}}),
    ("top-k 2 % + error feedback", {"codec": "topk", "options": {"fraction": 0.02}}),
    (
        "top-k 5 %, no error feedback",
        {"codec": "topk", "options": {"fraction": 0.05, "error_feedback": False}},
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--domains", default="healthcare,finance")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    out: list[str] = []
    with temporary_stores():
        from fedflow.checkpoint import load_checkpoint
        from flows.coordinator import federated_training

        for name in args.domains.split(","):
            domain = load_domain(name)
            results: dict[str, list[tuple[float, float]]] = {}
            for seed in range(args.seeds):
                for arm, compression in ARMS:
                    config = domain.spec.federation.model_copy(
                        update={"seed": seed, "audit": False, "compression": CompressionConfig(**compression)}
                    )
                    run_name = f"{name}-{compression['codec']}-{arm[:12]}-{seed}".replace(" ", "")
                    result = federated_training(domain=name, federation=config, run_name=run_name)
                    history = load_checkpoint(result.federation_id)[0].history
                    uplink = float(np.mean([h["network/bytes_received"] for h in history]))
                    auc = float(np.nanmean([s["roc_auc"] for s in result.per_site.values()]))
                    results.setdefault(arm, []).append((uplink, auc))
                print(f"{name}: seed {seed} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
            base = results["none"]
            rounds = domain.spec.federation.rounds
            lines = [
                f"**{name}: {rounds} rounds, {len(domain.spec.site_names)} sites ({args.seeds} seeds)**",
                "",
                "| codec | uplink bytes / round | fewer bytes | ROC AUC | AUC change vs none |",
                "|---|---|---|---|---|",
            ]
            for arm, runs in results.items():
                uplink = statistics.mean(u for u, _ in runs)
                aucs = [a for _, a in runs]
                changes = [a - b for (_, a), (_, b) in zip(runs, base, strict=True)]
                sd = statistics.stdev(changes) if len(changes) > 1 else 0.0
                lines.append(
                    f"| {arm} | {uplink:,.0f} | {statistics.mean(u for u, _ in base) / uplink:.1f}× | "
                    f"{statistics.mean(aucs):.4f} | {statistics.mean(changes):+.4f} ± {sd:.4f} |"
                )
            out.append("\n".join(lines) + "\n")
            print(out[-1], flush=True)
    print(f"wall time {time.perf_counter() - started:.0f} s")
    if args.markdown:
        args.markdown.write_text("\n".join(out))


if __name__ == "__main__":
    main()
