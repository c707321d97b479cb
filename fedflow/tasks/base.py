"""The TaskKind protocol: what changes between binary, multiclass, regression and language tasks.

A task kind owns everything that depends on it: inputs, labels, loss, metrics, the checks on its
target column, what its registered model returns and how it is served, and what it cannot be
combined with. A new kind is its own file and one line in the registry (`fedflow/tasks/__init__.py`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from fedflow.capabilities import Refusal
from fedflow.domain import DomainSpec
from fedflow.expectations import Expectation
from fedflow.language.base_model import BaseModelLocation, base_model_identity, exchanged_share
from fedflow.tabular import Preprocessor

if TYPE_CHECKING:
    import torch

# How a registered model is served (flows/tracking.py maps each to its pyfunc code and signature).
TABULAR = "tabular"  # raw site columns in, the task's prediction columns out
TEXT_GENERATION = "text-generation"  # prompts in, generated continuations out

# The values a metric can take (inclusive): what a site reports outside them is not a measurement.
UNIT = (0.0, 1.0)  # shares and areas: accuracy, balanced accuracy, ROC AUC, PR AUC, F1
NON_NEGATIVE = (0.0, math.inf)  # losses and errors
AT_MOST_ONE = (-math.inf, 1.0)  # R²: 1 is a perfect fit, worse than the mean is negative
AT_LEAST_ONE = (1.0, math.inf)  # perplexity: exp of a non-negative loss


def valid_ranges(**ranges: tuple[float, float]) -> Mapping[str, tuple[float, float]]:
    """A task kind's metrics and the inclusive range each can take (read-only)."""
    return MappingProxyType(ranges)


@dataclass(frozen=True)
class FrozenBase:
    """A pretrained model every party holds and nobody trains: only adapters on top of it travel."""

    sha256: str  # of its weights file ("" when it has none): every party must hold the same
    location: BaseModelLocation

    @property
    def tags(self) -> dict[str, str]:
        """Its name, architecture, weights file, SHA-256 and size, for the registry (loads it once)."""
        return dict(base_model_identity(self.location))

    def exchanged_share(self, adapter_parameters: int) -> float:
        """Share of the fine-tuned model's parameters that travel: adapters / (base + adapters)."""
        return exchanged_share(self.location, adapter_parameters)


class TaskKind(Protocol):
    """Inputs, labels, loss, predictions, metrics and outputs of one kind of task."""

    name: str
    metric_names: tuple[str, ...]
    default_champion_metric: str
    higher_is_better: frozenset[str]  # its metrics where larger is better; the others are minimised
    metric_ranges: Mapping[str, tuple[float, float]]  # every metric's valid (inclusive) range
    has_classes: bool  # labels are class indices: class counts, stratified splits, class weights
    predict_batch_size: int  # rows per forward pass when predicting
    reads_text_folders: bool  # a folder of UTF-8 .txt files can be a site's data (one row per file)
    serving: str  # how its registered model is served: TABULAR or TEXT_GENERATION
    capabilities: frozenset[str]  # see fedflow.capabilities
    refuses: tuple[Refusal, ...]  # what it cannot be combined with, and why

    def spec_problems(self, spec: DomainSpec) -> list[str]:
        """What a domain of this kind declares wrongly (target rule, classes, columns, model options)."""
        ...

    def target_expectations(self, spec: DomainSpec) -> list[Expectation]:
        """The checks on the target column that depend on the task (beyond not-null and its range)."""
        ...

    def class_names(self, spec: DomainSpec) -> list[str]:
        """Names of the label classes, in label order (empty when labels are not classes)."""
        ...

    def example_output(self, classes: list[str], rows: int) -> pd.DataFrame:
        """What the registered model returns for `rows` rows, for its signature (`classes`: the target's)."""
        ...

    def frozen_base(self, spec: DomainSpec) -> FrozenBase | None:
        """The base model every party must hold unchanged (None: the whole model is trained and sent)."""
        ...

    def features(self, frame: pd.DataFrame, spec: DomainSpec, preprocessor: Preprocessor) -> np.ndarray:
        """The model's input array for the rows of `frame` (at the site)."""
        ...

    def inputs(self, features: np.ndarray) -> torch.Tensor:
        """The tensor the model takes for rows of `features`."""
        ...

    def global_metrics(self, means: dict[str, float]) -> dict[str, float]:
        """Federation-wide metrics from the sites' weighted means (a ratio may need re-deriving)."""
        ...

    def output_dim(self, spec: DomainSpec) -> int:
        """Width of the model's last layer."""
        ...

    def labels(self, frame: pd.DataFrame, spec: DomainSpec) -> np.ndarray:
        """The training target of every row (float32 values or int64 class indices)."""
        ...

    def loss(
        self, outputs: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None
    ) -> torch.Tensor:
        """Mean loss of a batch; `class_weights` re-weights classes (classification only)."""
        ...

    def predict(self, outputs: torch.Tensor) -> np.ndarray:
        """Probabilities (classification) or values (regression) from raw model outputs."""
        ...

    def metrics(self, labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
        """Evaluation metrics of `predictions` against `labels`."""
        ...

    def example_losses(self, labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        """The loss of every row (for membership-inference audits)."""
        ...

    def output_frame(self, predictions: np.ndarray, spec_classes: list[str]) -> pd.DataFrame:
        """What the registered model returns for a batch of rows."""
        ...


class TabularRows:
    """What every tabular task shares: federated preprocessing in, float32 tensors, plain means."""

    predict_batch_size: int = 65536
    reads_text_folders: bool = False
    serving: str = TABULAR
    capabilities: frozenset[str] = frozenset()
    refuses: tuple[Refusal, ...] = ()

    def frozen_base(self, spec: DomainSpec) -> FrozenBase | None:
        """None: the whole model is trained and sent."""
        return None

    def features(self, frame: pd.DataFrame, spec: DomainSpec, preprocessor: Preprocessor) -> np.ndarray:
        """Federated preprocessing of the rows."""
        return preprocessor.transform(frame)

    def inputs(self, features: np.ndarray) -> torch.Tensor:
        """float32 features (sharing memory when already contiguous float32)."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))

    def global_metrics(self, means: dict[str, float]) -> dict[str, float]:
        """The weighted means as they are."""
        return means
