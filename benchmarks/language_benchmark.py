"""Federated LoRA on the language template: hold-out perplexity, bytes and seconds per round.

Four arms on the same per-site train / hold-out splits as the flow (SmolLM2-135M-Instruct,
LoRA r=8 on q_proj and v_proj, the template's local settings):

- base:       the base model, no fine-tuning (LoRA B = 0)
- federated:  the full flow (Prefect, GX, MLflow registration), FedAvg, R rounds of S local steps
- alone:      each site fine-tunes its own adapters for R x S steps on its own rows only
- pooled:     one adapter set fine-tuned on all sites' training rows for R x S x K steps
              (the same number of gradient steps as the K federated sites together)

Each site's hold-out perplexity is reported, and the federation's: exp of the sites' mean token
loss weighted by hold-out texts (as the flow logs `global/perplexity`). Bytes are the flow's
counted payloads, against what full fine-tuning would send (every base parameter in float32).

    .venv/bin/python benchmarks/language_benchmark.py [--rounds 5] [--local-steps 6]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
for _handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
    os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{_handler}_LEVEL", "WARNING")

from stores import temporary_stores  # noqa: E402

from domains import load_domain  # noqa: E402
from fedflow.config import FederationConfig  # noqa: E402
from fedflow.local import Training, evaluate_local, train_local  # noqa: E402
from fedflow.params import set_weights  # noqa: E402
from fedflow.rounds import initial_weights, round_metrics  # noqa: E402
from fedflow.seeding import derive_seed  # noqa: E402
from fedflow.site import LocalSite  # noqa: E402
from fedflow.tasks import get_task  # noqa: E402

TASK = get_task("language")


def _weighted(per_site: dict[str, dict[str, float]]) -> float:
    """The flow's `global/perplexity`: the same weighted means and the task's global metrics."""
    return TASK.global_metrics(round_metrics(per_site, TASK.metric_names).mean)["perplexity"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--local-steps", type=int, default=6)
    parser.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    args = parser.parse_args()
    domain = load_domain("language")
    spec = domain.spec
    base = spec.federation.model_dump()
    base.update({"rounds": args.rounds, "audit": False})
    base["local"]["max_steps"] = args.local_steps
    config = FederationConfig.model_validate(base)
    started = time.perf_counter()
    sites = {
        name: LocalSite.load(
            name=name,
            spec=spec,
            path=domain.site_path(name),
            holdout_fraction=config.holdout_fraction,
            seed=config.seed,
        )
        for name in spec.site_names
    }
    arrays = {
        name: (site.arrays(None, "train"), site.arrays(None, "holdout")) for name, site in sites.items()
    }  # type: ignore[arg-type]
    init = initial_weights(
        domain.build_model,
        input_dim=0,
        output_dim=0,
        options=spec.model,
        seed=derive_seed(config.seed, "init"),
    )

    def fresh() -> Any:
        model = domain.build_model(**spec.model)
        set_weights(model, init)
        return model

    def score(model: Any) -> dict[str, dict[str, float]]:
        return {name: evaluate_local(model, *holdout, task=TASK) for name, (_, holdout) in arrays.items()}

    results: dict[str, dict[str, dict[str, float]]] = {}
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    results["base"] = score(fresh())
    seconds["base"] = time.perf_counter() - t
    print(f"base: {_weighted(results['base']):.2f} ({seconds['base']:.0f} s)", flush=True)

    steps = args.rounds * args.local_steps
    t = time.perf_counter()
    alone: dict[str, dict[str, float]] = {}
    for name, ((x, y), holdout) in arrays.items():
        model = fresh()
        local = config.local.model_copy(update={"max_steps": steps})
        train_local(
            model, x, y, Training(task=TASK, config=local, seed=derive_seed(config.seed, "alone", name))
        )
        alone[name] = evaluate_local(model, *holdout, task=TASK)
    results["alone"] = alone
    seconds["alone"] = time.perf_counter() - t
    print(f"alone: {_weighted(alone):.2f} ({seconds['alone']:.0f} s)", flush=True)

    t = time.perf_counter()
    pooled_x = np.concatenate([x for (x, _), _ in arrays.values()])
    model = fresh()
    local = config.local.model_copy(update={"max_steps": steps * len(arrays)})
    train_local(
        model, pooled_x, pooled_x, Training(task=TASK, config=local, seed=derive_seed(config.seed, "pooled"))
    )
    results["pooled"] = score(model)
    seconds["pooled"] = time.perf_counter() - t
    print(f"pooled: {_weighted(results['pooled']):.2f} ({seconds['pooled']:.0f} s)", flush=True)

    with temporary_stores():
        from mlflow.tracking import MlflowClient

        from flows.coordinator import federated_training

        t = time.perf_counter()
        result = federated_training(domain="language", federation=config, run_name="language-benchmark")
        seconds["federated"] = time.perf_counter() - t
        client = MlflowClient()

        def history(key: str) -> list[float]:
            points = client.get_metric_history(result.mlflow_run_id, key)
            return [m.value for m in sorted(points, key=lambda m: m.step)]

        round_seconds = history("time/round_seconds")
        received = history("network/bytes_received")
        sent = history("network/bytes_sent")
        share = history("network/exchanged_parameter_share")[0]
        adapters = int(history("model/adapter_parameters")[0])
        base_parameters = int(client.get_run(result.mlflow_run_id).data.tags["base_model.parameters"])
    results["federated"] = {
        name: {**metrics, "num_examples": results["base"][name]["num_examples"]}
        for name, metrics in result.per_site.items()
    }
    print(f"federated: {_weighted(results['federated']):.2f} ({seconds['federated']:.0f} s)", flush=True)

    k = len(arrays)
    full_model_bytes = base_parameters * 4  # what full fine-tuning sends per message (float32)
    lines = [
        f"language template, SmolLM2-135M-Instruct + LoRA r={spec.model.get('lora_r')} on "
        f"{spec.model.get('target_modules')}, {k} sites, {args.rounds} rounds x {args.local_steps} "
        "local steps "
        f"(batch {config.local.batch_size}, {spec.model.get('max_length')} tokens), seed {config.seed}",
        "",
        "| hold-out perplexity | " + " | ".join(arrays) + " | weighted mean |",
        "|---|" + "---:|" * (k + 1),
    ]
    for arm in ("base", "alone", "pooled", "federated"):
        row = results[arm]
        lines.append(
            f"| {arm} | "
            + " | ".join(f"{row[s]['perplexity']:.2f}" for s in arrays)
            + f" | {_weighted(row):.2f} |"
        )
    per_round = float(np.mean([r + s for r, s in zip(received, sent, strict=True)]))
    uplink = float(np.mean(received)) / k
    lines += [
        "",
        f"adapters: {adapters:,} parameters = {share:.4%} of {base_parameters + adapters:,}",
        f"uplink per site and round: {uplink / 1e6:.3f} MB (full fine-tuning: "
        f"{full_model_bytes / 1e6:.1f} MB, {full_model_bytes / uplink:,.0f}x more); all messages of a "
        f"round (train + evaluate broadcasts, {k} updates): {per_round / 1e6:.2f} MB, "
        f"full fine-tuning {per_round * full_model_bytes / uplink / 1e9:.2f} GB",
        f"seconds per round (flow, {k} sites, train + evaluate): mean {np.mean(round_seconds):.1f}, "
        f"min {min(round_seconds):.1f}, max {max(round_seconds):.1f}; "
        f"whole flow {seconds['federated']:.0f} s",
        f"arm wall time: base eval {seconds['base']:.0f} s, alone {seconds['alone']:.0f} s, "
        f"pooled {seconds['pooled']:.0f} s; benchmark {time.perf_counter() - started:.0f} s",
    ]
    print("\n".join(lines))
    if args.json is not None:
        args.json.write_text(json.dumps({"results": results, "seconds": seconds, "lines": lines}, indent=1))


if __name__ == "__main__":
    main()
