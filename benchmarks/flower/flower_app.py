"""The Flower app of the benchmark: one ``ClientApp`` and the ``ServerApp`` logic.

Message API of Flower >= 1.21 (``ClientApp`` + ``@app.train()``, ``ServerApp`` +
``@app.main()``, ``flwr.serverapp.strategy.FedAvg``). Used two ways by
``flower_workload.py``:

* ``--launcher run-simulation``: ``client_app`` below, and a ``ServerApp`` made by
  :func:`make_server_app` that writes its results into a dict of the caller;
* ``--launcher flwr-run``: this file is packed into a Flower App (FAB) together with
  ``workload.py`` and a generated ``pyproject.toml``; the module-level
  ``server_app`` reads ``num-clients`` / ``num-rounds`` / ``seed`` / ``result-path``
  from the run config and writes its results as JSON to ``result-path``.

Data, partition, model, local training: ``workload.py`` (no flwr in there).
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import torch
import workload as wl
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

# ---------------------------------------------------------------------- client
client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    """One local epoch on this SuperNode's partition, starting from the global model."""
    torch.set_num_threads(1)
    pid = int(context.node_config["partition-id"])
    n_parts = int(context.node_config["num-partitions"])
    cfg = msg.content["config"]
    seed = int(cfg["seed"])
    rnd = int(cfg["server-round"])
    x, y = wl.client_data(pid, n_parts, seed)  # cached per worker process
    model = wl.MLP()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    loss = wl.local_train(
        model,
        x,
        y,
        seed=seed,
        server_round=rnd,
        partition_id=pid,
        epochs=int(cfg["local-epochs"]),
        lr=float(cfg["lr"]),
        batch_size=int(cfg["batch-size"]),
    )
    content = RecordDict(
        {
            "arrays": ArrayRecord(model.state_dict()),
            "metrics": MetricRecord({"train_loss": loss, "num-examples": len(y)}),
        }
    )
    return Message(content=content, reply_to=msg)


# ---------------------------------------------------------------------- server
def payload_bytes(arrays: ArrayRecord) -> int:
    """Bytes of one ArrayRecord as Flower serialises it for transport: every nested
    object deflated (ArrayRecord header, Array headers, ArrayChunks holding the
    ``numpy.save`` bytes of each array)."""
    return sum(len(o.deflate()) for o in get_all_nested_objects(arrays).values())


def run_server(grid: Grid, num_clients: int, num_rounds: int, seed: int) -> dict[str, Any]:
    """FedAvg over all ``num_clients`` SuperNodes for ``num_rounds`` rounds."""
    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    data = wl.load_split(seed)
    init = wl.initial_model(seed)  # torch.manual_seed(seed), then MLP()
    initial_arrays = ArrayRecord(init.state_dict())
    # A client's reply carries an ArrayRecord of exactly this shape/dtype, so
    # its serialised size is the same as that of the initial one.
    out["bytes_per_round_per_client"] = payload_bytes(initial_arrays)
    out["array_data_bytes"] = sum(len(a.data) for a in initial_arrays.values())
    out["raw_float32_bytes"] = int(sum(v.numel() * v.element_size() for v in init.state_dict().values()))

    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,  # no federated evaluation; central test split below
        min_train_nodes=num_clients,
        min_evaluate_nodes=0,
        min_available_nodes=num_clients,
    )
    model = wl.MLP()
    round_marks: list[float] = []

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        # Flower calls this before round 1 (server_round=0) and after every round;
        # it doubles as a per-round clock.
        round_marks.append(time.perf_counter())
        if server_round != num_rounds:
            return None  # only the final global model is reported
        model.load_state_dict(arrays.to_torch_state_dict())
        loss, acc = wl.evaluate(model, data.x_test, data.y_test)
        return MetricRecord({"test_loss": loss, "test_accuracy": acc})

    t = time.perf_counter()
    result = strategy.start(
        grid=grid,
        initial_arrays=initial_arrays,
        num_rounds=num_rounds,
        train_config=ConfigRecord(
            {"seed": seed, "lr": wl.LR, "batch-size": wl.BATCH_SIZE, "local-epochs": wl.LOCAL_EPOCHS}
        ),
        evaluate_fn=evaluate_fn,
    )
    out["fl_loop_seconds"] = time.perf_counter() - t
    out["round_seconds"] = [round(b - a, 4) for a, b in itertools.pairwise(round_marks)]
    final = result.evaluate_metrics_serverapp.get(num_rounds)
    if final is not None:
        out["test_accuracy"] = float(final["test_accuracy"])
        out["test_loss"] = float(final["test_loss"])
    # Evaluate the model Flower hands back as well (guards against evaluate_fn
    # semantics changing between releases).
    model.load_state_dict(result.arrays.to_torch_state_dict())
    out["test_accuracy_of_result_arrays"] = wl.evaluate(model, data.x_test, data.y_test)[1]
    out["rounds_completed"] = len(result.train_metrics_clientapp)
    return out


def make_server_app(num_clients: int, num_rounds: int, seed: int, out: dict[str, Any]) -> ServerApp:
    """ServerApp for ``run_simulation``; results are put into ``out``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        out.update(run_server(grid, num_clients, num_rounds, seed))

    return app


# ServerApp for `flwr run` (configured through the run config).
server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    out = run_server(grid, int(cfg["num-clients"]), int(cfg["num-rounds"]), int(cfg["seed"]))
    path = str(cfg.get("result-path", ""))
    if path:
        tmp = Path(path + ".tmp")
        tmp.write_text(json.dumps(out))
        tmp.replace(path)  # atomic: the launcher polls for this file
