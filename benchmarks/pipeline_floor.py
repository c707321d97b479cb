"""What the full pipeline costs before any federated work: the floor under fedflow's side-by-side figures.

Starts the process as `fedflow run` does (Prefect's temporary server warming up in the
background), imports what every run needs (torch, Prefect, MLflow, Great Expectations, the
coordinator flow), creates one torch optimiser (torch imports its compiler stack on the first
one), waits for the server, and stops. Prints wall time and the peak PSS of the process tree
(this process and Prefect's server), the same measures as `benchmarks/fedflow_workload.py`.

    .venv/bin/python benchmarks/pipeline_floor.py
"""

import time

STARTED = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
for _handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
    os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{_handler}_LEVEL", "WARNING")

from process_memory import MemorySampler  # noqa: E402


def main() -> None:
    sampler = MemorySampler(interval=0.1)
    sampler.start()
    import flows  # noqa: F401
    from flows.api_warmup import api_ready, warm_up_api

    warm_up_api()
    marks = {}
    import torch

    marks["torch"] = time.perf_counter() - STARTED
    import great_expectations  # noqa: F401
    import mlflow  # noqa: F401

    from flows.coordinator import federated_training  # noqa: F401

    marks["imports"] = time.perf_counter() - STARTED
    torch.optim.SGD(torch.nn.Linear(30, 2).parameters(), lr=0.05)
    marks["first optimiser"] = time.perf_counter() - STARTED
    api_ready()
    marks["Prefect API ready"] = time.perf_counter() - STARTED
    time.sleep(0.3)  # one more memory sample of the settled tree
    sampler.stop()
    out = {
        "seconds_at": {k: round(v, 2) for k, v in marks.items()},
        "wall_seconds": round(time.perf_counter() - STARTED, 2),
        "peak_memory_mb": round(sampler.peak_pss / 2**20),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
