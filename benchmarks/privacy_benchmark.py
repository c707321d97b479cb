"""Accuracy and membership-inference exposure with and without client-level DP.

For heart disease and finance: FedAvg without DP, then central DP-FedAvg with the noise
multiplier that spends exactly epsilon in {0.5, 1, 4, 8} (delta 1e-5, all sites every round)
over the domain's rounds, computed with Opacus's RDP accountant. Reported: the mean over sites
of hold-out ROC AUC, balanced accuracy and accuracy, and the attacks' AUC (loss threshold,
calibrated loss, LiRA with 8 shadow models per site) and LiRA's TPR at 1 % FPR (mean over
sites), mean ± sd over seeds.

    .venv/bin/python benchmarks/privacy_benchmark.py --seeds 3 [--clip-norm 0.5] [--markdown out.md]
    .venv/bin/python benchmarks/privacy_benchmark.py --dp-sgd --domains healthcare --seeds 3

With --dp-sgd the noise is example-level DP-SGD at every site instead (Opacus, per-example
clip 1.0), with the noise multiplier that keeps every site's epsilon at the target after all its
steps (the site with the most steps per row decides).
"""

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from opacus.accountants.utils import get_noise_multiplier
from stores import temporary_stores

sys.path.insert(0, str(Path(__file__).resolve().parent))
for _handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
    os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{_handler}_LEVEL", "WARNING")

from strategies_benchmark import markdown  # noqa: E402

from domains import load_domain  # noqa: E402
from fedflow.config import DPSGDConfig, PrivacyConfig  # noqa: E402

METRICS = [
    "roc_auc",
    "balanced_accuracy",
    "accuracy",
    "mia_loss_auc",
    "mia_calibrated_auc",
    "mia_lira_auc",
    "mia_lira_tpr_at_1fpr",
]
EPSILONS = (0.5, 1.0, 4.0, 8.0)
DELTA = 1e-5


def _dp_sgd_sigma(domain: Any, epsilon: float) -> float:
    """The noise multiplier that keeps every site's DP-SGD epsilon at `epsilon` after the run."""
    from benchmarks_support import site_train_sizes

    fed = domain.spec.federation
    sigmas = []
    for rows in site_train_sizes(domain, fed).values():
        batches = -(-rows // fed.local.batch_size)
        sigmas.append(
            get_noise_multiplier(
                target_epsilon=epsilon,
                target_delta=DELTA,
                sample_rate=1.0 / batches,
                steps=batches * fed.local.epochs * fed.rounds,
                accountant="rdp",
            )
        )
    return max(sigmas)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--clip-norm", type=float, default=0.5)
    parser.add_argument("--domains", default="healthcare,finance")
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--dp-sgd", action="store_true", help="example-level DP-SGD instead of DP-FedAvg")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    out = []
    with temporary_stores():
        from flows.coordinator import federated_training

        for name in args.domains.split(","):
            domain = load_domain(name)
            rounds = domain.spec.federation.rounds
            arms: list[tuple[str, dict[str, Any]]] = [("no DP", {})]
            for epsilon in EPSILONS:
                if args.dp_sgd:
                    sigma = _dp_sgd_sigma(domain, epsilon)
                    dp = DPSGDConfig(noise_multiplier=sigma, max_grad_norm=1.0, delta=DELTA)
                    local = domain.spec.federation.local.model_copy(update={"dp_sgd": dp})
                    arms.append((f"DP-SGD ε = {epsilon:g} (σ = {sigma:.2f})", {"local": local}))
                    continue
                sigma = get_noise_multiplier(
                    target_epsilon=epsilon,
                    target_delta=DELTA,
                    sample_rate=1.0,
                    steps=rounds,
                    accountant="rdp",
                )
                privacy = PrivacyConfig(
                    mode="central", clip_norm=args.clip_norm, noise_multiplier=sigma, delta=DELTA
                )
                arms.append((f"DP ε = {epsilon:g} (σ = {sigma:.2f})", {"privacy": privacy}))
            rows: dict[str, list[dict[str, float]]] = {}
            for seed in range(args.seeds):
                for arm, update in arms:
                    config = domain.spec.federation.model_copy(update={"seed": seed, **update})
                    result = federated_training(
                        domain=name, federation=config, run_name=f"{name}-{arm}-{seed}"
                    )
                    values = {
                        m: float(np.nanmean([s[m] for s in result.per_site.values()])) for m in METRICS[:3]
                    }
                    for key in METRICS[3:]:
                        values[key] = float(np.mean([a[key] for a in result.audit.values()]))
                    rows.setdefault(arm, []).append(values)
                print(
                    f"{name}: seed {seed} done ({time.perf_counter() - started:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
            kind = "DP-SGD, per-example clip 1.0" if args.dp_sgd else f"DP-FedAvg, clip norm {args.clip_norm}"
            title = f"{name}: {rounds} rounds, {kind}, δ = {DELTA:g} ({args.seeds} seeds)"
            out.append(markdown(title, rows, METRICS))
            print(out[-1], flush=True)
    print(f"wall time {time.perf_counter() - started:.0f} s")
    if args.markdown:
        args.markdown.write_text("\n".join(out))


if __name__ == "__main__":
    main()
