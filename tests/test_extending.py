"""Extending fedflow by adding files only (README, "Extending fedflow"): a strategy with a site
hook, a codec and a task kind in a package of their own, declared as entry points, and a domain
folder found through FEDFLOW_DOMAINS_PATH. Nothing in fedflow/, flows/, domains/ or validation/
changes; `fedflow validate` and `fedflow run` use them in fresh processes, as a user would."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from domains import DOMAINS_ROOT

FEDFLOW = str(Path(sys.executable).with_name("fedflow"))

STRATEGY = '''
"""FedAvg with element-wise gradient clipping in every site's loop (a plugin's strategy)."""

from collections.abc import Mapping

import torch

from fedflow.strategies.base import ClientHook, GradientAdjustment, HookOutcome, LocalRound
from fedflow.strategies.fedavg import FedAvg


class ClipGradients:
    """Caps every gradient value at +-max_grad before the optimiser steps."""

    def __init__(self, max_grad: float) -> None:
        self.max_grad = max_grad

    def begin(self, parameters: Mapping[str, torch.nn.Parameter]) -> None:
        """Nothing to remember."""

    def adjust(self, name: str, parameter: torch.nn.Parameter) -> None:
        """Clip in place."""
        assert parameter.grad is not None
        parameter.grad.clamp_(-self.max_grad, self.max_grad)


class ClipHook:
    """The site side: clipped gradients; nothing extra sent or kept."""

    changes_gradients = True

    def __init__(self, max_grad: float) -> None:
        self.max_grad = max_grad

    def gradient_adjustment(self, local: LocalRound) -> GradientAdjustment | None:
        """Clip every gradient."""
        return ClipGradients(self.max_grad)

    def after_training(self, local: LocalRound, end, steps: int) -> HookOutcome:
        """Nothing to send or keep."""
        return HookOutcome()


class FedAvgClip(FedAvg):
    """FedAvg on the server; clipped gradients at the sites."""

    name = "fedavgclip"

    def __init__(self, *, max_grad: float = 0.01, weighting: str = "examples") -> None:
        super().__init__(weighting=weighting)
        self.max_grad = max_grad

    def client_hook(self) -> ClientHook:
        """Ask the sites to clip."""
        return ClipHook(self.max_grad)
'''

CODEC = '''
"""signSGD-style uplink (Bernstein et al. 2018): one int8 sign per value and one float32 scale."""

import numpy as np

from fedflow.compression.base import expect_wire
from fedflow.params import flatten, unflatten


class SignCodec:
    """Signs and the mean magnitude; no residual."""

    name = "sign"
    capabilities = frozenset()  # not dense: the magnitudes do not travel
    refuses = ()

    def compress(self, delta, *, residual, seed):
        """int8 signs and their mean magnitude."""
        vector = flatten(delta)
        scale = np.array([np.abs(vector).mean()], dtype=np.float32)
        return {"signs": np.sign(vector).astype(np.int8), "scale": scale}, {}

    def decompress(self, wire, *, like):
        """scale * sign, shaped like the model."""
        length = sum(int(np.size(v)) for v in like.values())
        expect_wire(wire, {"signs": (np.int8, length), "scale": (np.float32, 1)}, self.name)
        return unflatten(wire["signs"].astype(np.float64) * float(wire["scale"][0]), like)
'''

TASK = '''
"""Counts: Poisson regression (log link), for targets like 0, 1, 2, ... events."""

import numpy as np
import pandas as pd
import torch

from fedflow.domain import DomainSpec
from fedflow.expectations import NUMERIC_DTYPES, Expectation
from fedflow.tasks.base import TABULAR, TabularRows


class CountTask(TabularRows):
    """The model's output is the log of the expected count."""

    name = "count"
    metric_names = ("loss", "mae", "rmse")
    default_champion_metric = "mae"
    higher_is_better = frozenset()
    has_classes = False
    serving = TABULAR

    def spec_problems(self, spec: DomainSpec) -> list[str]:
        """A count cannot be negative."""
        ok = spec.target.min is not None and spec.target.min >= 0
        return [] if ok else ["a count target needs min >= 0"]

    def target_expectations(self, spec: DomainSpec) -> list[Expectation]:
        """Numbers."""
        column = spec.target.column
        numbers = {"column": column, "type_list": NUMERIC_DTYPES}
        return [Expectation("expect_column_values_to_be_in_type_list", numbers)]

    def class_names(self, spec: DomainSpec) -> list[str]:
        """No classes."""
        return []

    def example_output(self, classes: list[str], rows: int) -> pd.DataFrame:
        """Expected counts."""
        return pd.DataFrame({"expected_count": [1.0] * rows})

    def output_dim(self, spec: DomainSpec) -> int:
        """log(rate)."""
        return 1

    def labels(self, frame: pd.DataFrame, spec: DomainSpec) -> np.ndarray:
        """The counts as float32."""
        return pd.to_numeric(frame[spec.target.column], errors="raise").to_numpy(dtype=np.float32)

    def loss(self, outputs, targets, class_weights):
        """Poisson negative log-likelihood with a log link."""
        return torch.nn.functional.poisson_nll_loss(outputs.reshape(-1), targets, log_input=True)

    def predict(self, outputs) -> np.ndarray:
        """Expected counts."""
        return torch.exp(outputs.reshape(-1)).numpy()

    def metrics(self, labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
        """Mean Poisson deviance (as loss), MAE and RMSE."""
        y, mu = labels.astype(np.float64), np.clip(predictions.astype(np.float64), 1e-9, None)
        deviance = 2 * (np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu), 0.0) - (y - mu))
        error = mu - y
        rmse = float(np.sqrt((error**2).mean()))
        return {"loss": float(deviance.mean()), "mae": float(np.abs(error).mean()), "rmse": rmse}

    def example_losses(self, labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        """Each row's deviance."""
        y, mu = labels.astype(np.float64), np.clip(predictions.astype(np.float64), 1e-9, None)
        return np.asarray(2 * (np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu), 0.0) - (y - mu)))

    def output_frame(self, predictions: np.ndarray, spec_classes: list[str]) -> pd.DataFrame:
        """What the registered model returns."""
        return pd.DataFrame({"expected_count": predictions.astype(np.float64)})
'''

ENTRY_POINTS = """
[fedflow.strategies]
fedavgclip = fedflow_extras.fedavgclip:FedAvgClip

[fedflow.codecs]
sign = fedflow_extras.sign_codec:SignCodec

[fedflow.tasks]
count = fedflow_extras.count_task:CountTask
"""


def _plugin(root: Path) -> Path:
    """The plugin as an installed distribution would lay it out: its package and its metadata."""
    package = root / "fedflow_extras"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""fedflow plugins for a test."""\n')
    (package / "fedavgclip.py").write_text(STRATEGY)
    (package / "sign_codec.py").write_text(CODEC)
    (package / "count_task.py").write_text(TASK)
    info = root / "fedflow_extras-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fedflow-extras\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(ENTRY_POINTS))
    return root


def _domain(root: Path) -> Path:
    """Heart-disease severity (num, 0-4) as a count, at the same four hospitals: a copied folder."""
    folder = root / "severity"
    shutil.copytree(DOMAINS_ROOT / "healthcare", folder, ignore=shutil.ignore_patterns("__pycache__"))
    config = (folder / "config.yaml").read_text()
    config = config.replace("name: healthcare", "name: severity").replace("task: binary", "task: count")
    config = re.sub(r"(?m)^  positive_above: .*\n", "", config)
    (folder / "config.yaml").write_text(config)
    return root


@pytest.mark.slow  # two `fedflow` processes, one of them a whole federation with its Prefect server
def test_a_strategy_a_codec_a_task_kind_and_a_domain_added_as_files_only(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "MLFLOW_"))}
    env.update(
        PYTHONPATH=str(_plugin(tmp_path / "plugin")),
        FEDFLOW_DOMAINS_PATH=str(_domain(tmp_path / "domains")),
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        FEDFLOW_ARTIFACT_ROOT=str(tmp_path / "artifacts"),
        FEDFLOW_STATE_DIR=str(tmp_path / "state"),
        PREFECT_HOME=str(tmp_path / "prefect"),
    )
    data = tmp_path / "domains" / "severity" / "data" / "cleveland.csv"
    validated = subprocess.run(
        [FEDFLOW, "validate", "severity", "--data", str(data)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert validated.returncode == 0, validated.stdout[-2000:] + validated.stderr[-2000:]

    refused = subprocess.run(
        [FEDFLOW, "run", "severity", "--strategy", "fedavgclip", "--dp-sgd-noise", "1.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode != 0
    assert "local.dp_sgd cannot be combined with strategy 'fedavgclip'" in refused.stdout + refused.stderr

    command = [
        FEDFLOW,
        "run",
        "severity",
        "--rounds",
        "2",
        "--no-audit",
        "--run-name",
        "plugins",
        "--strategy",
        "fedavgclip",
        "-o",
        "max_grad=0.05",
        "--codec",
        "sign",
    ]
    completed = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "mae" in completed.stdout

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("severity").experiment_id])
    assert run.data.params["strategy.name"] == "fedavgclip" and run.data.params["compression.codec"] == "sign"
    metrics = run.data.metrics
    assert metrics["network/uplink_compression"] > 3, "int8 signs instead of float32 values"
    assert 0 < metrics["global/mae"] < 2 and "global/roc_auc" not in metrics
    state = json.loads((tmp_path / "state" / "runs" / "plugins" / "state.json").read_text())
    assert state["round"] == 2 and state["config"]["strategy"]["options"] == {"max_grad": 0.05}
