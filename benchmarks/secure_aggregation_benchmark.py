"""What secure aggregation costs: the protocol alone, and a federated round with and without it.

Part 1 runs one round of the protocol in one process (no Prefect) for n sites and a d-value
update, through the engine's own code on both sides: the coordinator's `open_secure_round` /
`close_secure_round` (fedflow/federation/secure_round.py) over an `InProcessChannel` of real
`SiteAgent`s (advertise, share and unmask answered from each site's state folder; the agents
hold no rows, which these phases never read), and each site's Mask step (`masked_payload`) on
a synthetic delta, read back by the coordinator's check (`read_masked`). It reports seconds per
phase summed over sites, the coordinator's unmasking time, bytes per site (shares, masked and
plain update payloads) and the largest error of the recovered sum. Part 2 runs the healthcare
flow (4 hospitals) with and without --secure-aggregation, same seed, and reports seconds per
round, bytes received per round and the final hold-out ROC AUC.

    .venv/bin/python benchmarks/secure_aggregation_benchmark.py [--rounds 5] [--markdown out.md]
"""

import argparse
import logging
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
for _handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
    os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{_handler}_LEVEL", "WARNING")

from stores import temporary_stores  # noqa: E402

from domains import load_domain  # noqa: E402
from fedflow.config import SecureAggregationConfig  # noqa: E402
from fedflow.federation.channel import ReplyHandle  # noqa: E402
from fedflow.federation.in_process import InProcessChannel  # noqa: E402
from fedflow.federation.secure_round import (  # noqa: E402
    SecureRoundSettings,
    close_secure_round,
    open_secure_round,
)
from fedflow.messages import Message  # noqa: E402
from fedflow.params import encode  # noqa: E402
from fedflow.secure_aggregation.masking import masked_payload, read_masked  # noqa: E402
from fedflow.site_agent import SiteAgent, SiteData, SiteSettings  # noqa: E402
from flows.site_agents import DomainValidator  # noqa: E402

BITS = 24
FEDERATION = "secagg-benchmark"
DELTA = "delta"  # the synthetic update: one tensor of `values` float32 values


class TimedChannel:
    """An `InProcessChannel` that adds up the seconds the sites spend per kind of request."""

    def __init__(self, agents: Mapping[str, SiteAgent]) -> None:
        self.inner = InProcessChannel(agents)
        self.seconds: dict[str, float] = defaultdict(float)

    def send(self, requests: Mapping[str, Message]) -> dict[str, ReplyHandle]:
        """Deliver (every site in turn, in this thread) and time it."""
        started = time.perf_counter()
        try:
            return self.inner.send(requests)
        finally:
            kind = str(next(iter(requests.values())).kind) if requests else "none"
            self.seconds[kind] += time.perf_counter() - started


def _agents(names: list[str], folder: Path) -> dict[str, SiteAgent]:
    """Sites with a state and key folder but no rows: the secure-aggregation phases never read rows."""
    domain = load_domain("healthcare")
    return {
        name: SiteAgent(
            SiteSettings(
                name=name,
                spec=domain.spec,
                build_model=domain.build_model,
                data=SiteData(problem="protocol benchmark: no rows"),
                validator=DomainValidator(domain),
                state_dir=folder / "state",
                keys_dir=folder / "keys",
            )
        )
        for name in names
    }


def protocol_cost(sites: int, values: int, dropouts: int) -> dict[str, float]:
    """Seconds and bytes of one round of the protocol, `dropouts` sites lost after sharing."""
    rng = np.random.default_rng(0)
    names = [f"site-{i:03d}" for i in range(sites)]
    deltas = {name: {DELTA: rng.normal(0, 0.1, size=values).astype(np.float32)} for name in names}
    settings = SecureRoundSettings(
        federation_id=FEDERATION,
        round=1,
        config=SecureAggregationConfig(enabled=True, max_dropouts=max(dropouts, 1), fraction_bits=BITS),
        weighted_by_examples=False,
        min_sites=1,
    )
    like = {DELTA: np.zeros(values, dtype=np.float64)}  # the sum in float64: the error is the protocol's
    log = logging.getLogger("secure_aggregation_benchmark")
    with tempfile.TemporaryDirectory() as folder:
        channel = TimedChannel(_agents(names, Path(folder)))
        opened = open_secure_round(names, settings, channel)  # phases 1 and 2
        t1 = time.perf_counter()
        survivors = list(opened.plan.members)[dropouts:]
        masked: dict[str, tuple[np.ndarray, int]] = {}
        payload_bytes = 0
        for name in survivors:  # phase 3: each site's Mask step, then the coordinator's check
            # What a site's train step does before masking: check the plan, record its members.
            secrets = channel.inner.agents[name]._secrets(FEDERATION, settings.round, opened.plan)
            payload = masked_payload(
                deltas[name], site=name, num_examples=1, secrets=secrets, plan=opened.plan
            )
            payload_bytes += len(payload)
            masked[name] = (read_masked(payload, length=values, max_payload_bytes=2**40), 1)
        t2 = time.perf_counter()
        mean = close_secure_round(opened, masked, settings=settings, channel=channel, like=like, log=log)
        t3 = time.perf_counter()
    recovered = mean.delta[DELTA] * len(survivors)
    expected = sum(deltas[n][DELTA].astype(np.float64) for n in survivors)
    reveal = channel.seconds["secagg-unmask"]
    return {
        "keys_s": channel.seconds["secagg-advertise"],
        "share_s": channel.seconds["secagg-share"],
        "mask_s_per_site": (t2 - t1) / len(survivors),
        "reveal_s": reveal,
        "unmask_s": t3 - t2 - reveal,
        "share_bytes_per_site": sum(len(b) for box in opened.inbox.values() for b in box.values()) / sites,
        "masked_bytes_per_site": payload_bytes / len(survivors),
        "plain_bytes_per_site": float(len(encode(deltas[names[0]]))),
        "max_error": float(np.max(np.abs(recovered - expected))),
    }


def flow_cost(rounds: int) -> dict[str, dict[str, float]]:
    """Healthcare flow with and without secure aggregation, same seed."""
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
            "bytes_received_per_round": float(np.mean([h["network/bytes_received"] for h in history])),
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
