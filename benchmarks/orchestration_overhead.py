"""What Prefect and MLflow add to a round, over fedflow's bare engine, at the heart-disease workload.

1. Bare engine: the same four hospitals, preprocessing, local training (2 epochs), update
   checks, FedAvg and per-site evaluation, called as plain functions in one thread — no Prefect,
   no MLflow. Seconds per round.
2. The real flow (temporary Prefect API, MLflow on SQLite, one registered version per round):
   seconds per round, and the time of each coordinator-side step of a round (model registration,
   champion alias, metric logging, checkpoint, round artifact), measured by wrapping them.
3. Prefect's own cost per task: a flow that submits no-op tasks with the site tasks' options,
   one at a time and all at once.

    .venv/bin/python benchmarks/orchestration_overhead.py [--rounds 6]
"""

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
for _handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
    os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{_handler}_LEVEL", "WARNING")

import torch  # noqa: E402
from stores import temporary_stores  # noqa: E402

import flows  # noqa: E402, F401
from domains import load_domain  # noqa: E402
from fedflow.local import balanced_class_weights  # noqa: E402, F401
from fedflow.params import encode  # noqa: E402
from fedflow.rounds import check_update, initial_weights  # noqa: E402
from fedflow.seeding import derive_seed  # noqa: E402
from fedflow.site import LocalSite, local_evaluate_step, local_train_step  # noqa: E402
from fedflow.strategies import build_strategy  # noqa: E402
from fedflow.tabular import fit_preprocessor, merge_statistics  # noqa: E402
from fedflow.tasks import get_task  # noqa: E402


def bare_rounds(rounds: int) -> list[float]:
    """Seconds per round of the engine alone."""
    domain = load_domain("healthcare")
    spec, config = domain.spec, domain.spec.federation
    sites = {
        name: LocalSite.load(
            name=name,
            spec=spec,
            path=domain.site_path(name),
            holdout_fraction=config.holdout_fraction,
            seed=0,
        )
        for name in spec.site_names
    }
    preprocessor = fit_preprocessor(merge_statistics([s.statistics() for s in sites.values()]), spec)
    arrays = {
        n: (s.arrays(preprocessor, "train"), s.arrays(preprocessor, "holdout")) for n, s in sites.items()
    }
    task = get_task(spec.task)
    weights = initial_weights(
        domain.build_model,
        input_dim=len(preprocessor.feature_names),
        output_dim=task.output_dim(spec),
        options=spec.model,
        seed=derive_seed(0, "init"),
    )
    strategy = build_strategy(config.strategy.name, config.strategy.options)
    strategy.setup(weights, num_sites=len(sites))
    out = []
    for round_number in range(1, rounds + 1):
        started = time.perf_counter()
        payload = encode(weights)
        updates = []
        for name, ((x, y), _) in arrays.items():
            step = local_train_step(
                site=name,
                round_number=round_number,
                spec=spec,
                factory=domain.build_model,
                global_payload=payload,
                features=x,
                labels=y,
                config=config.local,
                seed=0,
            )
            updates.append(check_update(step.update, weights))
        weights = strategy.aggregate(round_number, weights, updates)
        new_payload = encode(weights)
        for _, (_, (x, y)) in arrays.items():
            local_evaluate_step(
                spec=spec, factory=domain.build_model, global_payload=new_payload, features=x, labels=y
            )
        out.append(time.perf_counter() - started)
    return out


def flow_rounds(rounds: int) -> tuple[list[float], dict[str, list[float]]]:
    """Seconds per round of the real flow, and of each wrapped coordinator step."""
    import fedflow.checkpoint
    import flows.coordinator as coordinator
    from fedflow.checkpoint import load_checkpoint
    from fedflow.config import FederationConfig

    spent: dict[str, list[float]] = defaultdict(list)

    def timed(name: str, function):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name].append(time.perf_counter() - started)

        return wrapper

    tracker = coordinator.FederationTracker
    tracker.register_round = timed("model registration", tracker.register_round)  # type: ignore[method-assign]
    tracker.offer_champion = timed("champion alias", tracker.offer_champion)  # type: ignore[method-assign]
    tracker.log_metrics = timed("metric logging", tracker.log_metrics)  # type: ignore[method-assign]
    coordinator.save_checkpoint = timed("checkpoint", fedflow.checkpoint.save_checkpoint)
    coordinator.create_markdown_artifact = timed(
        "round artifact (Prefect)", coordinator.create_markdown_artifact
    )
    domain = load_domain("healthcare")
    config = domain.spec.federation.model_copy(update={"rounds": rounds, "audit": False})
    result = coordinator.federated_training(
        domain="healthcare",
        federation=FederationConfig.model_validate(config.model_dump()),
        run_name="overhead",
    )
    history = load_checkpoint(result.federation_id)[0].history
    return [h["time/round_seconds"] for h in history], spent


def task_overhead(tasks: int) -> tuple[float, float]:
    """Milliseconds per no-op task: submitted one at a time, and all at once."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    @task(cache_policy=NO_CACHE)
    def nothing(i: int) -> int:
        return i

    @flow
    def measure() -> tuple[float, float]:
        nothing.submit(-1).result()  # warm up
        started = time.perf_counter()
        for i in range(tasks):
            nothing.submit(i).result()
        one_by_one = (time.perf_counter() - started) / tasks
        started = time.perf_counter()
        futures = [nothing.submit(i) for i in range(tasks)]
        [f.result() for f in futures]
        together = (time.perf_counter() - started) / tasks
        return one_by_one * 1000, together * 1000

    return measure()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tasks", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bare = bare_rounds(args.rounds)[1:]
    with temporary_stores():
        full, spent = flow_rounds(args.rounds)
        sequential_ms, concurrent_ms = task_overhead(args.tasks)
    full = full[1:]
    bare_mean, full_mean = statistics.mean(bare), statistics.mean(full)
    print(f"rounds 2..{args.rounds}, healthcare (4 sites, 2 local epochs), torch threads 1\n")
    print("| | seconds per round |")
    print("|---|---|")
    print(f"| bare engine (no Prefect, no MLflow) | {bare_mean:.3f} |")
    print(f"| full flow | {full_mean:.3f} |")
    print(
        f"| overhead | {full_mean - bare_mean:.3f} ({(full_mean - bare_mean) / full_mean:.0%} of the round) |"
    )
    print("\n| coordinator step | ms per round |")
    print("|---|---|")
    for name, values in spent.items():
        per_round = values[1:]  # the first call warms up
        if per_round:
            print(f"| {name} | {1000 * statistics.mean(per_round):.1f} |")
    print(
        f"\nPrefect no-op task: {sequential_ms:.1f} ms one at a time, {concurrent_ms:.1f} ms each when "
        f"{args.tasks} are submitted together"
    )


if __name__ == "__main__":
    main()
