"""What Prefect and MLflow add to a round, over fedflow's bare engine, at the heart-disease workload.

1. Bare engine: the engine's own federation driver (`fedflow.federation.run_federation`) over an
   `InProcessChannel` of the four hospitals' `SiteAgent`s and a `MemoryRecorder` without
   checkpoints: the same preparation (GX validation, once, before the rounds), preprocessing,
   local training (2 epochs), update checks, FedAvg and per-site evaluation, in one thread,
   no Prefect, no MLflow. Seconds per round: the driver's own `time/round_seconds`.
2. The real flow (temporary Prefect API, MLflow on SQLite, one registered version per round):
   seconds per round, and the time of each step of a round's tracking (`TrackingRecorder._publish`,
   on its background thread: model registration, champion alias, metric logging, round
   artifact, checkpoint), measured by wrapping them.
3. Prefect's own cost per task: a flow that submits no-op tasks with the site tasks' options,
   one at a time and all at once.

    .venv/bin/python benchmarks/orchestration_overhead.py [--rounds 6]
"""

import argparse
import gc
import logging
import os
import statistics
import sys
import tempfile
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
from fedflow.federation import DomainModel, FederationPlan, run_federation  # noqa: E402
from fedflow.federation.in_process import InProcessChannel  # noqa: E402
from fedflow.federation.memory_recorder import MemoryRecorder  # noqa: E402
from fedflow.site_agent import SiteAgent, SiteData, SiteSettings  # noqa: E402
from flows.site_agents import DomainValidator  # noqa: E402


def bare_rounds(rounds: int) -> list[float]:
    """Seconds per round of the engine alone: the driver over agents in this thread."""
    domain = load_domain("healthcare")
    config = domain.spec.federation.model_copy(update={"rounds": rounds, "audit": False})
    with tempfile.TemporaryDirectory() as folder:
        agents = {
            name: SiteAgent(
                SiteSettings(
                    name=name,
                    spec=domain.spec,
                    build_model=domain.build_model,
                    data=SiteData(path=domain.site_path(name)),
                    validator=DomainValidator(domain),
                    state_dir=Path(folder) / "state",
                    keys_dir=Path(folder) / "keys",
                )
            )
            for name in domain.spec.site_names
        }
        plan = FederationPlan(
            federation_id="overhead-bare",
            domain=DomainModel(name=domain.name, spec=domain.spec, build_model=domain.build_model),
            config=config,
            sites=domain.spec.site_names,
        )
        recorder = MemoryRecorder(checkpoints=False)
        run_federation(
            plan,
            channel=InProcessChannel(agents),
            recorder=recorder,
            log=logging.getLogger("orchestration_overhead"),
        )
    return [record.logged["time/round_seconds"] for record in recorder.rounds]


def flow_rounds(rounds: int) -> tuple[list[float], dict[str, list[float]]]:
    """Seconds per round of the real flow, and of each wrapped step of a round's tracking."""
    import flows.tracking_recorder as tracking_recorder
    from fedflow.federation import FederationState
    from flows.coordinator import federated_training
    from flows.tracking import FederationTracker

    spent: dict[str, list[float]] = defaultdict(list)

    def timed(name: str, function):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name].append(time.perf_counter() - started)

        return wrapper

    tracker, recorder = FederationTracker, tracking_recorder.TrackingRecorder
    tracker.register_round = timed("model registration", tracker.register_round)  # type: ignore[method-assign]
    tracker.offer_champion = timed("champion alias", tracker.offer_champion)  # type: ignore[method-assign]
    tracker.log_metrics = timed("metric logging", tracker.log_metrics)  # type: ignore[method-assign]
    FederationState.save = timed("checkpoint", FederationState.save)  # type: ignore[method-assign]
    tracking_recorder.create_markdown_artifact = timed(  # type: ignore[assignment]
        "round artifact (Prefect)", tracking_recorder.create_markdown_artifact
    )
    recorder._publish = timed("a round's tracking, all of it", recorder._publish)  # type: ignore[method-assign]
    result = federated_training(
        domain="healthcare",
        overrides={"rounds": rounds, "audit": False},
        run_name="overhead",
    )
    history = FederationState.load(result.federation_id).checkpoint.history
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
    # Each arm starts from a collected heap: with torch, Prefect, MLflow and GX loaded the process
    # tracks over a million objects, and a full collection (0.5-0.9 s, all threads stopped) that the
    # previous arm's garbage brings forward would otherwise land inside one of the next arm's rounds.
    gc.collect()
    bare = bare_rounds(args.rounds)[1:]
    with temporary_stores():
        gc.collect()
        full, spent = flow_rounds(args.rounds)
        gc.collect()
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
