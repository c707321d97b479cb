"""Strategies side by side on every domain, with pooled and site-alone rows.

For each domain, every registered strategy runs the real flow for 5 seeds (its default options);
pooled and site-alone rows use the same splits and model (see `domains_benchmark.py`). Two extra
studies: telecom at Dirichlet alpha 0.1, 0.5 and 1.0, and heart disease under a FLamby-like
protocol (the 740 rows complete on the 10 features FLamby keeps, a logistic-regression model,
a third of each hospital held out).

    .venv/bin/python benchmarks/strategies_benchmark.py --seeds 5 [--domains healthcare,finance]
        [--studies main,telecom_alpha,flamby] [--markdown out.md]
"""

import argparse
import os
import shutil
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from stores import temporary_stores

sys.path.insert(0, str(Path(__file__).resolve().parent))
for _handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
    os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{_handler}_LEVEL", "WARNING")

from domains_benchmark import REPORTED, centralised, linear_pooled, load_sites  # noqa: E402

import flows  # noqa: E402,F401
from domains import DOMAINS_ROOT, Domain, available_domains, load_domain  # noqa: E402
from fedflow.config import StrategyConfig  # noqa: E402
from fedflow.strategies import STRATEGIES  # noqa: E402

FLAMBY_FEATURES = ["age", "trestbps", "chol", "thalch", "oldpeak"]
FLAMBY_CATEGORICAL = ["sex", "cp", "fbs", "restecg", "exang"]


def run_strategies(domain: Domain, strategies: list[str], seeds: int) -> dict[str, list[dict[str, float]]]:
    """Strategy (and pooled / site-alone) -> per seed, the mean over sites of each metric."""
    from flows.coordinator import federated_training

    metrics = REPORTED[domain.spec.task]
    rows: dict[str, list[dict[str, float]]] = {}

    def record(arm: str, per_site: dict[str, dict[str, float]]) -> None:
        rows.setdefault(arm, []).append(
            {m: float(np.nanmean([per_site[s][m] for s in per_site])) for m in metrics}
        )

    for seed in range(seeds):
        base = domain.spec.federation.model_copy(update={"seed": seed})
        for name in strategies:
            config = base.model_copy(update={"strategy": StrategyConfig(name=name)})
            result = federated_training(
                domain=domain.name, federation=config, run_name=f"{domain.name}-{name}-{seed}"
            )
            record(name, result.per_site)
        sites = load_sites(domain, base)
        record("pooled, same model", centralised(domain, base, sites, list(sites)))
        record("pooled, linear (scikit-learn)", linear_pooled(domain, sites))
        record("each site alone, same model", {s: centralised(domain, base, sites, [s])[s] for s in sites})
        print(f"  {domain.name}: seed {seed} done", file=sys.stderr, flush=True)
    return rows


def markdown(title: str, rows: dict[str, list[dict[str, float]]], metrics: list[str]) -> str:
    """Mean ± sd over seeds; the best mean per column in bold (ties to the first)."""
    means = {arm: {m: statistics.mean(r[m] for r in runs) for m in metrics} for arm, runs in rows.items()}
    best = {
        m: (min if m in ("rmse", "loss", "mae") or m.startswith("mia_") else max)(
            means, key=lambda arm: means[arm][m]
        )
        for m in metrics
    }
    lines = [f"**{title}**", "", "| arm | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for arm, runs in rows.items():
        cells = []
        for m in metrics:
            values = [r[m] for r in runs]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cell = f"{means[arm][m]:.3f} ± {sd:.3f}"
            cells.append(f"**{cell}**" if best[m] == arm else cell)
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def variant(root: Path, base: str, name: str, edit: Any, data_edit: Any = None) -> Domain:
    """A temporary copy of domain `base` called `name`, its config changed by `edit(config)`."""
    folder = root / name
    shutil.copytree(DOMAINS_ROOT / base, folder, ignore=shutil.ignore_patterns("__pycache__"))
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["name"] = name
    edit(config)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if data_edit is not None:
        data_edit(folder)
    return load_domain(name)


def alpha_edit(config: dict[str, Any], *, alpha: float) -> None:
    """Telecom at another Dirichlet alpha. Skewed sites are the point of the study, so the
    per-class minimum is dropped (at alpha 0.1 some operators have almost no churners)."""
    config["partition"].update({"alpha": alpha, "min_rows": 200})
    config["quality"] = {"min_rows": 100, "min_rows_per_class": 0}


def flamby_edit(config: dict[str, Any]) -> None:
    """FLamby's Fed-Heart-Disease columns, a linear model, a third held out, zeros kept as values."""
    config["numeric"] = [
        {**c, "missing_codes": [], "min": min(c.get("min", 0), 0)}
        for c in config["numeric"]
        if c["name"] in FLAMBY_FEATURES
    ]
    config["categorical"] = [c for c in config["categorical"] if c["name"] in FLAMBY_CATEGORICAL]
    config["model"] = {"hidden": []}
    config["quality"] = {"min_rows": 20}
    config["federation"]["holdout_fraction"] = 1 / 3


def flamby_data(folder: Path) -> None:
    """Keep the rows complete on FLamby's 10 features (740 of 920)."""
    for path in (folder / "data").glob("*.csv"):
        frame = pd.read_csv(path, dtype=str)
        frame.dropna(subset=FLAMBY_FEATURES + FLAMBY_CATEGORICAL).to_csv(path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--domains", default="all")
    parser.add_argument("--studies", default="main,telecom_alpha,flamby")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    studies = args.studies.split(",")
    names = available_domains() if args.domains == "all" else args.domains.split(",")
    strategies = sorted(STRATEGIES)
    out: list[str] = []
    started = time.perf_counter()

    def emit(text: str) -> None:
        out.append(text)
        print(text, flush=True)
        if args.markdown:
            args.markdown.write_text("\n".join(out))

    with temporary_stores(domains=True) as store:
        variants = store / "domains"
        if "main" in studies:
            for name in names:
                domain = load_domain(name)
                fed = domain.spec.federation
                title = f"{name} ({args.seeds} seeds, {fed.rounds} rounds × {fed.local.epochs} local epochs)"
                emit(
                    markdown(
                        title, run_strategies(domain, strategies, args.seeds), REPORTED[domain.spec.task]
                    )
                )
        if "telecom_alpha" in studies:
            for alpha in (0.1, 0.5, 1.0):
                tag = str(alpha).replace(".", "")
                domain = variant(variants, "telecom", f"telecom_a{tag}", partial(alpha_edit, alpha=alpha))
                rows = run_strategies(domain, strategies, args.seeds)
                emit(
                    markdown(f"telecom, Dirichlet α = {alpha} ({args.seeds} seeds)", rows, REPORTED["binary"])
                )
        if "flamby" in studies:
            domain = variant(variants, "healthcare", "healthcare_flamby", flamby_edit, flamby_data)
            rows = run_strategies(domain, ["fedavg", "fedprox", "scaffold", "fedyogi"], args.seeds)
            emit(
                markdown(
                    f"heart disease, FLamby-like protocol ({args.seeds} seeds)", rows, REPORTED["binary"]
                )
            )
    print(f"wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
