"""Seconds per round of the healthcare flow, and how much of it is MLflow model registration.

    .venv/bin/python benchmarks/round_cost.py [--rounds 5]

Runs the real flow (temporary Prefect API, MLflow on SQLite in a temporary folder) and prints
the flow's own `time/round_seconds` metric next to the time spent registering each version.
"""

import argparse
import os
import time

for handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
    os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{handler}_LEVEL", "WARNING")

import mlflow  # noqa: E402
from stores import temporary_stores  # noqa: E402

import flows  # noqa: E402,F401
from fedflow.config import FederationConfig, LocalTrainConfig  # noqa: E402
from flows import tracking  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    register = tracking.FederationTracker.register_round
    spent: list[float] = []

    def timed(self: tracking.FederationTracker, **kwargs: object) -> str:
        started = time.perf_counter()
        version = register(self, **kwargs)  # type: ignore[arg-type]
        spent.append(time.perf_counter() - started)
        return version

    tracking.FederationTracker.register_round = timed  # type: ignore[method-assign]
    from flows.coordinator import federated_training

    with temporary_stores():
        config = FederationConfig(rounds=args.rounds, local=LocalTrainConfig(epochs=2))
        result = federated_training(domain="healthcare", federation=config, run_name="round-cost")
        history = mlflow.tracking.MlflowClient().get_metric_history(
            result.mlflow_run_id, "time/round_seconds"
        )
    rounds = [m.value for m in sorted(history, key=lambda m: m.step)]
    print("round  seconds  of which registration")
    for i, (total, reg) in enumerate(zip(rounds, spent, strict=True), start=1):
        print(f"{i:5d}  {total:7.3f}  {reg:7.3f}")
    steady = rounds[1:] or rounds
    print(f"steady state (rounds 2..): {sum(steady) / len(steady):.3f} s per round")


if __name__ == "__main__":
    main()
