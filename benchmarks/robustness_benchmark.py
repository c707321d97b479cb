"""Robust aggregation under attack: 2 of 10 telecom sites (Dirichlet alpha 0.5) misbehave.

Rows: clean FedAvg; then, with sites 0 and 1 sending Gaussian noise (sd 1) instead of their
update, and separately training on flipped labels: FedAvg, coordinate-wise median, trimmed
mean (20 %) and Multi-Krum (f = 2). Each row is mean ± sd over seeds of the mean over the 10
sites' hold-out metrics (the hostile sites' hold-outs included: they are honest data).

    .venv/bin/python benchmarks/robustness_benchmark.py --seeds 5 [--markdown out.md]
"""

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stores import temporary_stores

sys.path.insert(0, str(Path(__file__).resolve().parent))
for _handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
    os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{_handler}_LEVEL", "WARNING")

from strategies_benchmark import markdown, variant  # noqa: E402

from fedflow.attacks import AttackConfig  # noqa: E402
from fedflow.config import StrategyConfig  # noqa: E402

METRICS = ["accuracy", "balanced_accuracy", "roc_auc"]
RULES: list[tuple[str, dict[str, Any]]] = [
    ("fedavg", {}),
    ("fedmedian", {}),
    ("fedtrimmedmean", {"trim": 0.2}),
    ("multikrum", {"byzantine": 2}),
]


def ten_sites(config: dict[str, Any]) -> None:
    """Telecom with 10 simulated operators at alpha 0.5."""
    config["partition"].update({"num_sites": 10, "alpha": 0.5, "min_rows": 150})
    config["quality"] = {"min_rows": 100, "min_rows_per_class": 5}
    config["federation"].update({"min_sites": 5, "min_sites_per_round": 10})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    rows: dict[str, list[dict[str, float]]] = {}
    with temporary_stores(domains=True) as store:
        from flows.coordinator import federated_training

        domain = variant(Path(store, "domains"), "telecom", "telecom_attack", ten_sites)
        hostile = domain.spec.site_names[:2]
        for seed in range(args.seeds):
            base = domain.spec.federation.model_copy(update={"seed": seed})
            arms: list[tuple[str, Any]] = [("clean: fedavg", base)]
            for kind in ("gaussian", "label_flip"):
                for rule, options in RULES:
                    arms.append(
                        (
                            f"{kind}: {rule}",
                            base.model_copy(
                                update={
                                    "strategy": StrategyConfig(name=rule, options=options),
                                    "attack": AttackConfig(kind=kind, sites=hostile, scale=1.0),
                                }
                            ),
                        )
                    )
            for arm, config in arms:
                result = federated_training(
                    domain=domain.name, federation=config, run_name=f"{arm}-{seed}".replace(": ", "-")
                )
                per_site = result.per_site
                rows.setdefault(arm, []).append(
                    {m: float(np.nanmean([per_site[s][m] for s in per_site])) for m in METRICS}
                )
            print(f"seed {seed} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    text = markdown(
        f"telecom, 10 sites, α = 0.5, hostile: {', '.join(hostile)} ({args.seeds} seeds)", rows, METRICS
    )
    print(text)
    print(f"wall time {time.perf_counter() - started:.0f} s")
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
