"""Regression: one output, mean squared error, RMSE / MAE / R²."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fedflow.domain import DomainSpec
from fedflow.expectations import NUMERIC_DTYPES, Expectation
from fedflow.tasks.base import AT_MOST_ONE, NON_NEGATIVE, TabularRows, valid_ranges

if TYPE_CHECKING:
    import torch


class RegressionTask(TabularRows):
    """Predict the numeric target column."""

    name: str = "regression"
    metric_names: tuple[str, ...] = ("loss", "rmse", "mae", "r2")
    default_champion_metric: str = "rmse"
    higher_is_better: frozenset[str] = frozenset({"r2"})
    metric_ranges: Mapping[str, tuple[float, float]] = valid_ranges(
        loss=NON_NEGATIVE, rmse=NON_NEGATIVE, mae=NON_NEGATIVE, r2=AT_MOST_ONE
    )
    has_classes: bool = False

    def spec_problems(self, spec: DomainSpec) -> list[str]:
        """Nothing beyond what every domain declares."""
        return []

    def target_expectations(self, spec: DomainSpec) -> list[Expectation]:
        """A numeric target."""
        return [
            Expectation(
                "expect_column_values_to_be_in_type_list",
                {"column": spec.target.column, "type_list": NUMERIC_DTYPES},
            )
        ]

    def class_names(self, spec: DomainSpec) -> list[str]:
        """No classes: the label is a value."""
        return []

    def example_output(self, classes: list[str], rows: int) -> pd.DataFrame:
        """Prediction 0.0 for every row."""
        return self.output_frame(np.zeros(rows), classes)

    def output_dim(self, spec: DomainSpec) -> int:
        """A single value."""
        return 1

    def labels(self, frame: pd.DataFrame, spec: DomainSpec) -> np.ndarray:
        """The target as float32."""
        return pd.to_numeric(frame[spec.target.column], errors="raise").to_numpy(dtype=np.float32)

    def loss(
        self, outputs: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None
    ) -> torch.Tensor:
        """Mean squared error (class weights do not apply)."""
        import torch

        return torch.nn.functional.mse_loss(outputs.reshape(-1), targets)

    def predict(self, outputs: torch.Tensor) -> np.ndarray:
        """The predicted values."""
        return outputs.reshape(-1).numpy()

    def metrics(self, labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
        """MSE as loss, RMSE, MAE and R² (NaN when the labels are constant)."""
        y = labels.astype(np.float64)
        error = predictions.astype(np.float64) - y
        mse = float(np.mean(error**2))
        variance = float(np.var(y))
        return {
            "loss": mse,
            "rmse": float(np.sqrt(mse)),
            "mae": float(np.mean(np.abs(error))),
            "r2": 1.0 - mse / variance if variance > 0 else float("nan"),
        }

    def example_losses(self, labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        """Squared error of every row."""
        return np.asarray((predictions.astype(np.float64) - labels.astype(np.float64)) ** 2)

    def output_frame(self, predictions: np.ndarray, spec_classes: list[str]) -> pd.DataFrame:
        """A `prediction` column."""
        return pd.DataFrame({"prediction": predictions.astype(np.float64)})
