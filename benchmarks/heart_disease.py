"""Heart disease: FedAvg across the four hospitals vs pooled training vs each hospital alone.

Every arm uses the same per-hospital seeded 75/25 split, the same preprocessing rules and the
same model; the federated arm is the real `federated_training` flow (Prefect, GX, MLflow in a
temporary folder). Reported: the mean over hospitals of the hold-out ROC AUC, balanced accuracy
and accuracy, as mean ± sd over seeds.

    .venv/bin/python benchmarks/heart_disease.py --seeds 5 [--rounds 20] [--markdown out.md]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_TASK_RUNS_LEVEL", "WARNING")

import flows  # noqa: F401  (no-telemetry defaults)
from domains import Domain, load_domain
from fedflow.config import FederationConfig
from fedflow.local import evaluate_local, train_local
from fedflow.metrics import binary_metrics
from fedflow.params import set_weights
from fedflow.rounds import initial_weights
from fedflow.seeding import derive_seed
from fedflow.site import LocalSite
from fedflow.tabular import fit_preprocessor, merge_statistics

METRICS = ["roc_auc", "balanced_accuracy", "accuracy"]


def _sites(domain: Domain, config: FederationConfig) -> dict[str, LocalSite]:
    return {
        name: LocalSite.load(
            name=name,
            spec=domain.spec,
            path=domain.site_path(name),
            holdout_fraction=config.holdout_fraction,
            seed=config.seed,
        )
        for name in domain.spec.sites
    }


def _mean_over_sites(per_site: dict[str, dict[str, float]]) -> dict[str, float]:
    return {m: float(np.nanmean([per_site[s][m] for s in per_site])) for m in METRICS}


def centralised(
    domain: Domain, config: FederationConfig, sites: dict[str, LocalSite], train_on: list[str]
) -> dict[str, dict[str, float]]:
    """Train one model on the union of `train_on`'s training rows; evaluate at each of them."""
    pre = fit_preprocessor(merge_statistics(sites[s].statistics() for s in train_on), domain.spec)
    parts = [sites[s].arrays(pre, "train") for s in train_on]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    model = domain.build_model(input_dim=x.shape[1], **domain.spec.model)
    set_weights(
        model,
        initial_weights(
            domain.build_model,
            input_dim=x.shape[1],
            options=domain.spec.model,
            seed=derive_seed(config.seed, "init"),
        ),
    )
    # The same number of passes over the data as the federation makes.
    local = config.local.model_copy(update={"epochs": config.local.epochs * config.rounds})
    train_local(model, x, y, config=local, seed=derive_seed(config.seed, "pooled", *train_on))
    return {s: evaluate_local(model, *sites[s].arrays(pre, "holdout")) for s in train_on}


def logistic_pooled(domain: Domain, sites: dict[str, LocalSite]) -> dict[str, dict[str, float]]:
    """scikit-learn logistic regression on the pooled training rows (a reference point)."""
    pre = fit_preprocessor(merge_statistics(s.statistics() for s in sites.values()), domain.spec)
    x = np.concatenate([s.arrays(pre, "train")[0] for s in sites.values()])
    y = np.concatenate([s.arrays(pre, "train")[1] for s in sites.values()])
    clf = LogisticRegression(max_iter=2000).fit(x, y)
    out = {}
    for name, site in sites.items():
        hx, hy = site.arrays(pre, "holdout")
        out[name] = binary_metrics(hy, clf.predict_proba(hx)[:, 1])
    return out


def federated(config: FederationConfig) -> dict[str, dict[str, float]]:
    from flows.coordinator import federated_training

    result = federated_training(
        domain="healthcare", federation=config, run_name=f"benchmark-seed{config.seed}"
    )
    return result.per_site


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=None, help="default: the domain's config")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    domain = load_domain("healthcare")
    results: dict[str, list[dict[str, float]]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as store:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
        os.environ["FEDFLOW_ARTIFACT_ROOT"] = f"{store}/artifacts"
        for seed in range(args.seeds):
            update: dict[str, object] = {"seed": seed}
            if args.rounds:
                update["rounds"] = args.rounds
            config = domain.spec.federation.model_copy(update=update)
            sites = _sites(domain, config)
            arms = {
                "FedAvg (fedflow flow, 4 hospitals)": federated(config),
                "pooled, same MLP": centralised(domain, config, sites, list(sites)),
                "pooled, logistic regression": logistic_pooled(domain, sites),
                "each hospital alone, same MLP": {
                    s: centralised(domain, config, sites, [s])[s] for s in sites
                },
            }
            for arm, per_site in arms.items():
                results.setdefault(arm, []).append(_mean_over_sites(per_site))
                results.setdefault(f"  per hospital: {arm}", []).append(
                    {f"{s}": per_site[s]["roc_auc"] for s in per_site}
                )
            print(f"seed {seed} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)

    lines = [
        f"| arm ({args.seeds} seeds) | ROC AUC | balanced accuracy | accuracy |",
        "|---|---|---|---|",
    ]
    for arm, rows in results.items():
        if arm.startswith("  per hospital"):
            continue
        cells = []
        for metric in METRICS:
            values = [r[metric] for r in rows]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {sd:.3f}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Per-hospital hold-out ROC AUC (mean over seeds):",
        "",
        "| arm | " + " | ".join(domain.spec.sites) + " |",
        "|---|" + "---|" * len(domain.spec.sites),
    ]
    for arm, rows in results.items():
        if not arm.startswith("  per hospital"):
            continue
        cells = [f"{np.nanmean([r[s] for r in rows]):.3f}" for s in domain.spec.sites]
        lines.append(f"| {arm.removeprefix('  per hospital: ')} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    print(f"\nwall time {time.perf_counter() - started:.0f} s")
    if args.markdown:
        args.markdown.write_text(table + "\n")


if __name__ == "__main__":
    main()
