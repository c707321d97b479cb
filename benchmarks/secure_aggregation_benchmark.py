"""What secure aggregation costs: the protocol alone, and a federated round with and without it.

Part 1 runs the four phases in one process (no Prefect) for n sites and a d-value update and
reports seconds per phase summed over sites, the coordinator's unmasking time, bytes per site
(keys, shares, masked update) and the largest error of the recovered sum. Part 2 runs the
healthcare flow (4 hospitals) with and without --secure-aggregation, same seed, and reports
seconds per round, bytes received per round and the final hold-out ROC AUC.

    .venv/bin/python benchmarks/secure_aggregation_benchmark.py [--rounds 5] [--markdown out.md]
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
for _handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
    os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{_handler}_LEVEL", "WARNING")

from stores import temporary_stores  # noqa: E402

from fedflow.secure_aggregation.fixed_point import decode_fixed_point, encode_fixed_point  # noqa: E402
from fedflow.secure_aggregation.protocol import (  # noqa: E402
    SiteSecrets,
    mask_update,
    reveal_shares,
    share_secrets,
    threshold_for,
    unmask_sum,
)

BITS = 24


def protocol_cost(sites: int, values: int, dropouts: int) -> dict[str, float]:
    """Seconds and bytes of one round of the protocol, `dropouts` sites lost after sharing."""
    rng = np.random.default_rng(0)
    names = [f"site-{i:03d}" for i in range(sites)]
    updates = {name: rng.normal(0, 0.1, size=values) for name in names}
    context = b"benchmark|round=1"
    t0 = time.perf_counter()
    secrets = {name: SiteSecrets.generate() for name in names}
    roster = {name: secrets[name].public() for name in names}
    threshold = threshold_for(sites, max(dropouts, 1))
    t1 = time.perf_counter()
    inbox: dict[str, dict[str, bytes]] = {name: {} for name in names}
    share_bytes = 0
    for sender in names:
        for recipient, blob in share_secrets(
            secrets[sender], site=sender, roster=roster, threshold=threshold, context=context
        ).items():
            inbox[recipient][sender] = blob
            share_bytes += len(blob)
    t2 = time.perf_counter()
    survivors = names[dropouts:]
    masked_sum = np.zeros(values, dtype=np.uint64)
    for name in survivors:
        encoded = encode_fixed_point(updates[name], fraction_bits=BITS, max_summands=sites)
        masked_sum += mask_update(encoded, secrets[name], site=name, roster=roster, context=context)
    t3 = time.perf_counter()
    responses = {
        name: reveal_shares(
            secrets[name],
            site=name,
            ciphertexts=inbox[name],
            roster=roster,
            survivors=survivors,
            threshold=threshold,
            context=context,
        )
        for name in survivors
    }
    t4 = time.perf_counter()
    total = unmask_sum(
        masked_sum,
        responses=responses,
        roster=roster,
        survivors=survivors,
        threshold=threshold,
        context=context,
    )
    t5 = time.perf_counter()
    error = float(
        np.max(np.abs(decode_fixed_point(total, fraction_bits=BITS) - sum(updates[n] for n in survivors)))
    )
    return {
        "keys_s": t1 - t0,
        "share_s": t2 - t1,
        "mask_s_per_site": (t3 - t2) / len(survivors),
        "reveal_s": t4 - t3,
        "unmask_s": t5 - t4,
        "share_bytes_per_site": share_bytes / sites,
        "masked_bytes_per_site": 8.0 * values,
        "plain_bytes_per_site": 4.0 * values,
        "max_error": error,
    }


def flow_cost(rounds: int) -> dict[str, dict[str, float]]:
    """Healthcare flow with and without secure aggregation, same seed."""
    from domains import load_domain
    from fedflow.checkpoint import load_checkpoint
    from flows.coordinator import federated_training

    domain = load_domain("healthcare")
    out = {}
    for arm, enabled in (("plain", False), ("secure aggregation", True)):
        config = domain.spec.federation.model_copy(
            update={
                "rounds": rounds,
                "audit": False,
                "secure_aggregation": domain.spec.federation.secure_aggregation.model_copy(
                    update={"enabled": enabled}
                ),
            }
        )
        result = federated_training(domain="healthcare", federation=config, run_name=f"secagg-{arm}")
        history = load_checkpoint(result.federation_id)[0].history
        later = history[1:] or history
        out[arm] = {
            "seconds_per_round": float(np.mean([h["time/round_seconds"] for h in later])),
            "bytes_received_per_round": float(np.mean([h["comm/bytes_received"] for h in history])),
            "roc_auc": result.final_metrics["roc_auc"],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [
        "| sites | values | dropped | keys s | share s | mask s/site | reveal s | unmask s | "
        "share B/site | masked B/site | plain B/site | max error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for sites, values, dropouts in (
        (4, 1_000, 0),
        (4, 100_000, 1),
        (10, 100_000, 2),
        (50, 100_000, 5),
        (10, 1_000_000, 2),
    ):
        c = protocol_cost(sites, values, dropouts)
        lines.append(
            f"| {sites} | {values:,} | {dropouts} | {c['keys_s']:.3f} | {c['share_s']:.3f} | "
            f"{c['mask_s_per_site']:.3f} | {c['reveal_s']:.3f} | {c['unmask_s']:.3f} | "
            f"{c['share_bytes_per_site']:,.0f} | {c['masked_bytes_per_site']:,.0f} | "
            f"{c['plain_bytes_per_site']:,.0f} | {c['max_error']:.1e} |"
        )
        print(lines[-1], flush=True)
    with temporary_stores():
        flows = flow_cost(args.rounds)
    lines += [
        "",
        f"| healthcare flow ({args.rounds} rounds) | seconds per round | bytes received per round "
        "| final ROC AUC |",
        "|---|---|---|---|",
    ]
    for arm, values in flows.items():
        lines.append(
            f"| {arm} | {values['seconds_per_round']:.3f} | {values['bytes_received_per_round']:,.0f} | "
            f"{values['roc_auc']:.4f} |"
        )
    print("\n".join(lines[-4:]))
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
