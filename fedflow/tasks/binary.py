"""Binary classification: one logit, BCE loss, ROC AUC / PR AUC / balanced accuracy."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fedflow.domain import DomainSpec
from fedflow.expectations import NUMERIC_DTYPES, Expectation
from fedflow.tasks.base import NON_NEGATIVE, UNIT, TabularRows, valid_ranges

if TYPE_CHECKING:
    import torch


class BinaryTask(TabularRows):
    """Label 1 when the target passes the domain's rule (`positive_above` or `positive_value`)."""

    name: str = "binary"
    metric_names: tuple[str, ...] = ("loss", "accuracy", "balanced_accuracy", "roc_auc", "pr_auc")
    default_champion_metric: str = "roc_auc"
    higher_is_better: frozenset[str] = frozenset({"accuracy", "balanced_accuracy", "roc_auc", "pr_auc"})
    metric_ranges: Mapping[str, tuple[float, float]] = valid_ranges(
        loss=NON_NEGATIVE, accuracy=UNIT, balanced_accuracy=UNIT, roc_auc=UNIT, pr_auc=UNIT
    )
    has_classes: bool = True

    def spec_problems(self, spec: DomainSpec) -> list[str]:
        """The target needs exactly one rule that makes a row positive."""
        if (spec.target.positive_above is None) == (spec.target.positive_value is None):
            return ["a binary target needs exactly one of positive_above or positive_value"]
        return []

    def target_expectations(self, spec: DomainSpec) -> list[Expectation]:
        """A numeric target when its rule is a threshold (`positive_above`)."""
        if spec.target.positive_above is None:
            return []
        return [
            Expectation(
                "expect_column_values_to_be_in_type_list",
                {"column": spec.target.column, "type_list": NUMERIC_DTYPES},
            )
        ]

    def class_names(self, spec: DomainSpec) -> list[str]:
        """Label 0 and label 1."""
        return ["negative", "positive"]

    def example_output(self, classes: list[str], rows: int) -> pd.DataFrame:
        """Probability 0.5 and prediction 1 for every row."""
        return self.output_frame(np.full(rows, 0.5), classes)

    def output_dim(self, spec: DomainSpec) -> int:
        """A single logit."""
        return 1

    def labels(self, frame: pd.DataFrame, spec: DomainSpec) -> np.ndarray:
        """0/1 labels as float32."""
        target = spec.target
        column = frame[target.column]
        if target.positive_above is not None:
            positive = pd.to_numeric(column, errors="raise") > target.positive_above
        else:
            positive = column.astype(str) == str(target.positive_value)
        return positive.to_numpy(dtype=np.float32)

    def loss(
        self, outputs: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None
    ) -> torch.Tensor:
        """Binary cross-entropy on the logit; class weights become BCE's `pos_weight`."""
        import torch

        pos_weight = None if class_weights is None else class_weights[1] / class_weights[0]
        return torch.nn.functional.binary_cross_entropy_with_logits(
            outputs.reshape(-1), targets, pos_weight=pos_weight
        )

    def predict(self, outputs: torch.Tensor) -> np.ndarray:
        """Probability of the positive class."""
        import torch

        return torch.sigmoid(outputs.reshape(-1)).numpy()

    def metrics(self, labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
        """Log loss, accuracy and balanced accuracy at 0.5, ROC AUC and PR AUC (NaN with one class)."""
        from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score

        y = labels.astype(np.float64)
        p = np.clip(predictions.astype(np.float64), 1e-7, 1 - 1e-7)
        hard = (p >= 0.5).astype(np.float64)
        both = len(np.unique(y)) == 2
        return {
            "loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
            "accuracy": float(np.mean(hard == y)),
            "balanced_accuracy": float(balanced_accuracy_score(y, hard)) if both else math.nan,
            "roc_auc": float(roc_auc_score(y, p)) if both else math.nan,
            "pr_auc": float(average_precision_score(y, p)) if both else math.nan,
        }

    def example_losses(self, labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        """Binary cross-entropy of every row."""
        y = labels.astype(np.float64)
        p = np.clip(predictions.astype(np.float64), 1e-7, 1 - 1e-7)
        return np.asarray(-(y * np.log(p) + (1 - y) * np.log(1 - p)))

    def output_frame(self, predictions: np.ndarray, spec_classes: list[str]) -> pd.DataFrame:
        """`probability` of the positive class and the 0/1 `prediction`."""
        return pd.DataFrame(
            {
                "probability": predictions.astype(np.float64),
                "prediction": (predictions >= 0.5).astype(np.int64),
            }
        )
