"""Seconds per round of the healthcare flow, and how much of it is MLflow model registration.

    .venv/bin/python benchmarks/round_cost.py [--rounds 5] [--json]

Runs the real flow (temporary Prefect API, MLflow on SQLite in a temporary folder) and prints
the flow's own `time/round_seconds` metric (the round's critical path) next to what the
tracking thread spends on each round: registering its version (`register_round`: the logged
model, its files and the registry version) and that plus offering it as champion (alias, tags,
descriptions). Every `log_metrics` call of the run (linked to the round's model in MLflow 3)
is summed apart. To time older code, run this file with that tree
first on the path: `PYTHONPATH=/tmp/before .venv/bin/python benchmarks/round_cost.py`.
"""

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

for handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
    os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{handler}_LEVEL", "WARNING")

import mlflow  # noqa: E402
from stores import temporary_stores  # noqa: E402

import flows  # noqa: E402,F401
from fedflow.config import FederationConfig, LocalTrainConfig  # noqa: E402
from flows import tracking  # noqa: E402

TIMED = ("register_round", "offer_champion", "log_metrics")


def _time_tracker_methods() -> dict[str, list[float]]:
    """Wrap the tracker's round methods so each call's seconds are kept, by method name."""
    spent: dict[str, list[float]] = {name: [] for name in TIMED}

    def timed(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: tracking.FederationTracker, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                spent[name].append(time.perf_counter() - started)

        return wrapper

    for name in TIMED:
        setattr(tracking.FederationTracker, name, timed(name, getattr(tracking.FederationTracker, name)))
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="also print one JSON line of the means")
    args = parser.parse_args()
    spent = _time_tracker_methods()
    from flows.coordinator import federated_training

    with temporary_stores():
        config = FederationConfig(rounds=args.rounds, local=LocalTrainConfig(epochs=2))
        started = time.perf_counter()
        result = federated_training(domain="healthcare", federation=config, run_name="round-cost")
        flow_seconds = time.perf_counter() - started
        history = mlflow.tracking.MlflowClient().get_metric_history(
            result.mlflow_run_id, "time/round_seconds"
        )
    rounds = [m.value for m in sorted(history, key=lambda m: m.step)]
    registration = spent["register_round"]
    tracking_seconds = [reg + offer for reg, offer in zip(registration, spent["offer_champion"], strict=True)]
    print("round  seconds  registration  + champion")
    for i, (total, reg, tracked) in enumerate(zip(rounds, registration, tracking_seconds, strict=True), 1):
        print(f"{i:5d}  {total:7.3f}  {reg:12.3f}  {tracked:8.3f}")
    steady = slice(1, None) if len(rounds) > 1 else slice(None)

    def mean(values: list[float]) -> float:
        return sum(values[steady]) / len(values[steady])

    print(
        f"steady state (rounds 2..): {mean(rounds):.3f} s per round, "
        f"registration {mean(registration):.3f} s, with champion {mean(tracking_seconds):.3f} s; "
        f"all log_metrics calls {sum(spent['log_metrics']):.3f} s; flow {flow_seconds:.1f} s"
    )
    if args.json:
        summary = {
            "code": str(tracking.__file__),
            "round_seconds": mean(rounds),
            "registration_seconds": mean(registration),
            "tracking_seconds": mean(tracking_seconds),
            "log_metrics_seconds": sum(spent["log_metrics"]),
            "flow_seconds": flow_seconds,
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
