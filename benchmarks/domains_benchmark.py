"""Every domain: FedAvg across its sites vs pooled training vs each site alone.

All arms share each site's seeded hold-out split, the domain's preprocessing rules, model and
local optimiser. The federated arm is the real `federated_training` flow (Prefect, GX, MLflow
in a temporary folder). Pooled and site-alone arms train the same model for the same number of
passes over their rows (rounds x local epochs). "Pooled, linear" is a scikit-learn logistic or
ridge regression on the pooled rows, for reference. Each metric is the mean over sites of the
site's hold-out value; the table gives mean ± sd over seeds.

    .venv/bin/python benchmarks/domains.py --domain all --seeds 5 [--markdown out.md]
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
from sklearn.linear_model import LogisticRegression, Ridge
from stores import temporary_stores

for _handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
    os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{_handler}_LEVEL", "WARNING")

import flows  # noqa: E402,F401  (no-telemetry defaults)
from domains import Domain, available_domains, load_domain  # noqa: E402
from fedflow.config import FederationConfig  # noqa: E402
from fedflow.local import Training, balanced_class_weights, evaluate_local, train_local  # noqa: E402
from fedflow.params import set_weights  # noqa: E402
from fedflow.rounds import initial_weights  # noqa: E402
from fedflow.seeding import derive_seed  # noqa: E402
from fedflow.site import LocalSite  # noqa: E402
from fedflow.tabular import fit_preprocessor, merge_statistics  # noqa: E402
from fedflow.tasks import get_task  # noqa: E402

REPORTED = {
    "binary": ["roc_auc", "pr_auc", "balanced_accuracy", "accuracy"],
    "multiclass": ["balanced_accuracy", "accuracy", "macro_f1"],
    "regression": ["rmse", "r2"],
}


def load_sites(domain: Domain, config: FederationConfig) -> dict[str, LocalSite]:
    """Every site's split, exactly as the flow's site tasks make it."""
    return {
        name: LocalSite.load(
            name=name,
            spec=domain.spec,
            path=domain.site_path(name),
            holdout_fraction=config.holdout_fraction,
            seed=config.seed,
            simulated=domain.is_simulated(name),
        )
        for name in domain.spec.site_names
    }


def centralised(
    domain: Domain, config: FederationConfig, sites: dict[str, LocalSite], train_on: list[str]
) -> dict[str, dict[str, float]]:
    """One model on the union of `train_on`'s training rows, evaluated at each of those sites."""
    spec = domain.spec
    task = get_task(spec.task)
    stats = merge_statistics(sites[s].statistics() for s in train_on)
    pre = fit_preprocessor(stats, spec)
    parts = [sites[s].arrays(pre, "train") for s in train_on]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    out_dim = task.output_dim(spec)
    model = domain.build_model(input_dim=x.shape[1], output_dim=out_dim, **spec.model)
    set_weights(
        model,
        initial_weights(
            domain.build_model,
            input_dim=x.shape[1],
            output_dim=out_dim,
            options=spec.model,
            seed=derive_seed(config.seed, "init"),
        ),
    )
    weights = (
        balanced_class_weights(stats.label_counts, max(out_dim, 2))
        if config.local.class_weighting == "balanced" and spec.task != "regression"
        else None
    )
    local = config.local.model_copy(update={"epochs": config.local.epochs * config.rounds})
    seed = derive_seed(config.seed, "pooled", *train_on)
    train_local(model, x, y, Training(task=task, config=local, seed=seed, class_weights=weights))
    return {s: evaluate_local(model, *sites[s].arrays(pre, "holdout"), task=task) for s in train_on}


def linear_pooled(domain: Domain, sites: dict[str, LocalSite]) -> dict[str, dict[str, float]]:
    """scikit-learn's logistic (classification) or ridge (regression) model on the pooled rows."""
    spec = domain.spec
    task = get_task(spec.task)
    pre = fit_preprocessor(merge_statistics(s.statistics() for s in sites.values()), spec)
    x = np.concatenate([s.arrays(pre, "train")[0] for s in sites.values()])
    y = np.concatenate([s.arrays(pre, "train")[1] for s in sites.values()])
    balanced = "balanced" if spec.federation.local.class_weighting == "balanced" else None
    model: Any = (
        Ridge() if spec.task == "regression" else LogisticRegression(max_iter=3000, class_weight=balanced)
    )
    model.fit(x, y)
    out = {}
    for name, site in sites.items():
        hx, hy = site.arrays(pre, "holdout")
        if spec.task == "regression":
            predictions = model.predict(hx)
        elif spec.task == "binary":
            predictions = model.predict_proba(hx)[:, 1]
        else:
            proba = np.zeros((len(hx), task.output_dim(spec)))
            proba[:, model.classes_.astype(int)] = model.predict_proba(hx)
            predictions = proba
        out[name] = task.metrics(hy, predictions)
    return out


def federated(domain: Domain, config: FederationConfig) -> dict[str, dict[str, float]]:
    """The real coordinator flow."""
    from flows.coordinator import federated_training

    result = federated_training(
        domain=domain.name, federation=config, run_name=f"bench-{domain.name}-{config.seed}"
    )
    return result.per_site


def run_domain(
    domain: Domain, seeds: int, rounds: int | None
) -> tuple[dict[str, list[dict[str, float]]], list[str]]:
    """Every arm for every seed: arm -> one {metric: mean over sites} per seed."""
    metrics = REPORTED[domain.spec.task]
    results: dict[str, list[dict[str, float]]] = {}
    for seed in range(seeds):
        update: dict[str, object] = {"seed": seed}
        if rounds:
            update["rounds"] = rounds
        config = domain.spec.federation.model_copy(update=update)
        sites = load_sites(domain, config)
        arms = {
            "FedAvg (fedflow flow)": federated(domain, config),
            "pooled, same model": centralised(domain, config, sites, list(sites)),
            "pooled, linear (scikit-learn)": linear_pooled(domain, sites),
            "each site alone, same model": {s: centralised(domain, config, sites, [s])[s] for s in sites},
        }
        for arm, per_site in arms.items():
            results.setdefault(arm, []).append(
                {m: float(np.nanmean([per_site[s][m] for s in per_site])) for m in metrics}
            )
    return results, metrics


def table(
    name: str, config: FederationConfig, results: dict[str, list[dict[str, float]]], metrics: list[str]
) -> str:
    """A markdown table of mean ± sd over seeds."""
    seeds = len(next(iter(results.values())))
    lines = [
        f"**{name}** ({seeds} seeds, {config.rounds} rounds × {config.local.epochs} local epochs)",
        "",
        "| arm | " + " | ".join(metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for arm, rows in results.items():
        cells = []
        for metric in metrics:
            values = [r[metric] for r in rows]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {sd:.3f}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--domain", default="all", help="a domain name, or all")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=None, help="default: each domain's config")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    names = available_domains() if args.domain == "all" else [args.domain]
    output = []
    started = time.perf_counter()
    with temporary_stores():
        for name in names:
            domain = load_domain(name)
            results, metrics = run_domain(domain, args.seeds, args.rounds)
            config = domain.spec.federation.model_copy(
                update={"rounds": args.rounds or domain.spec.federation.rounds}
            )
            output.append(table(name, config, results, metrics))
            print(output[-1], flush=True)
            print(f"({name} done at {time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    print(f"wall time {time.perf_counter() - started:.0f} s")
    if args.markdown:
        args.markdown.write_text("\n".join(output))


if __name__ == "__main__":
    main()
