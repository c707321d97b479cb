"""The TaskKind protocol: what changes between binary, multiclass and regression tasks."""

from typing import Protocol

import numpy as np
import pandas as pd
import torch

from fedflow.domain import DomainSpec
from fedflow.tabular import Preprocessor


class TaskKind(Protocol):
    """Inputs, labels, loss, predictions and metrics of one kind of task."""

    name: str
    metric_names: tuple[str, ...]
    default_champion_metric: str
    has_classes: bool  # labels are class indices: class counts, stratified splits, class weights
    predict_batch_size: int  # rows per forward pass when predicting

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

    def features(self, frame: pd.DataFrame, spec: DomainSpec, preprocessor: Preprocessor) -> np.ndarray:
        """Federated preprocessing of the rows."""
        return preprocessor.transform(frame)

    def inputs(self, features: np.ndarray) -> torch.Tensor:
        """float32 features (sharing memory when already contiguous float32)."""
        return torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))

    def global_metrics(self, means: dict[str, float]) -> dict[str, float]:
        """The weighted means as they are."""
        return means
