"""Personalisation: the global model vs the same model fine-tuned k steps at each site.

    .venv/bin/python benchmarks/personalisation_benchmark.py --domain education --steps 20 --seeds 5

Runs the real flow with `personalization_steps = k`; reports, for the domain's ranking metric,
the mean over sites of the global and the personalised hold-out values (mean ± sd over seeds).
"""

import argparse
import os
import statistics

import numpy as np
import torch
from stores import temporary_stores

for _handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
    os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{_handler}_LEVEL", "WARNING")

from domains import load_domain  # noqa: E402
from fedflow.tasks import get_task  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--domain", default="education")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    domain = load_domain(args.domain)
    task = get_task(domain.spec.task)
    metric = domain.spec.champion_metric or task.default_champion_metric
    values: dict[str, list[float]] = {"global": [], "personalised": []}
    with temporary_stores():
        from flows.coordinator import federated_training

        for seed in range(args.seeds):
            config = domain.spec.federation.model_copy(
                update={"seed": seed, "personalization_steps": args.steps, "audit": False}
            )
            result = federated_training(domain=args.domain, federation=config, run_name=f"personal-{seed}")
            per_site = result.per_site.values()
            values["global"].append(float(np.nanmean([s[metric] for s in per_site])))
            values["personalised"].append(float(np.nanmean([s[f"personalised/{metric}"] for s in per_site])))
    print(f"| {args.domain}, {metric}, k = {args.steps} ({args.seeds} seeds) | mean ± sd |")
    print("|---|---|")
    for name, series in values.items():
        sd = statistics.stdev(series) if len(series) > 1 else 0.0
        print(f"| {name} | {statistics.mean(series):.3f} ± {sd:.3f} |")


if __name__ == "__main__":
    main()
