"""Multiclass classification: one logit per class, cross-entropy, balanced accuracy and macro F1."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fedflow.domain import DomainSpec
from fedflow.expectations import Expectation
from fedflow.tasks.base import NON_NEGATIVE, UNIT, TabularRows, valid_ranges

if TYPE_CHECKING:
    import torch


class MulticlassTask(TabularRows):
    """The target column takes one of the domain's declared `classes`."""

    name: str = "multiclass"
    metric_names: tuple[str, ...] = ("loss", "accuracy", "balanced_accuracy", "macro_f1")
    default_champion_metric: str = "balanced_accuracy"
    higher_is_better: frozenset[str] = frozenset({"accuracy", "balanced_accuracy", "macro_f1"})
    metric_ranges: Mapping[str, tuple[float, float]] = valid_ranges(
        loss=NON_NEGATIVE, accuracy=UNIT, balanced_accuracy=UNIT, macro_f1=UNIT
    )
    has_classes: bool = True

    def spec_problems(self, spec: DomainSpec) -> list[str]:
        """At least two declared classes."""
        if len(spec.target.classes) < 2:
            return ["a multiclass target needs at least two `classes`"]
        return []

    def target_expectations(self, spec: DomainSpec) -> list[Expectation]:
        """Every target value is one of the declared classes."""
        target = spec.target
        return [
            Expectation(
                "expect_column_values_to_be_in_set", {"column": target.column, "value_set": target.classes}
            )
        ]

    def class_names(self, spec: DomainSpec) -> list[str]:
        """The declared classes, in order."""
        return list(spec.target.classes)

    def example_output(self, classes: list[str], rows: int) -> pd.DataFrame:
        """Equal probabilities; the first class predicted."""
        return self.output_frame(np.full((rows, len(classes)), 1.0 / len(classes)), classes)

    def output_dim(self, spec: DomainSpec) -> int:
        """One logit per declared class."""
        return len(spec.target.classes)

    def labels(self, frame: pd.DataFrame, spec: DomainSpec) -> np.ndarray:
        """Class indices (int64) in the order of `target.classes`; an unknown class is an error."""
        classes = [str(c) for c in spec.target.classes]
        values = frame[spec.target.column].astype(str)
        unknown = sorted(set(values) - set(classes))
        if unknown:
            raise ValueError(f"column {spec.target.column!r} has classes {unknown[:5]} not in {classes}")
        return values.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)

    def loss(
        self, outputs: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None
    ) -> torch.Tensor:
        """Cross-entropy, optionally class-weighted."""
        import torch

        return torch.nn.functional.cross_entropy(outputs, targets.long(), weight=class_weights)

    def predict(self, outputs: torch.Tensor) -> np.ndarray:
        """Class probabilities, one column per class."""
        import torch

        return torch.softmax(outputs, dim=1).numpy()

    def metrics(self, labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
        """Log loss, accuracy, balanced accuracy and macro F1."""
        from sklearn.metrics import balanced_accuracy_score, f1_score

        y = labels.astype(np.int64)
        p = np.clip(predictions.astype(np.float64), 1e-7, 1.0)
        hard = p.argmax(axis=1)
        return {
            "loss": float(-np.mean(np.log(p[np.arange(len(y)), y]))),
            "accuracy": float(np.mean(hard == y)),
            "balanced_accuracy": float(balanced_accuracy_score(y, hard)),
            "macro_f1": float(
                f1_score(y, hard, average="macro", labels=list(range(p.shape[1])), zero_division=0)
            ),
        }

    def example_losses(self, labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        """Cross-entropy of every row."""
        p = np.clip(predictions.astype(np.float64), 1e-7, 1.0)
        return np.asarray(-np.log(p[np.arange(len(labels)), labels.astype(np.int64)]))

    def output_frame(self, predictions: np.ndarray, spec_classes: list[str]) -> pd.DataFrame:
        """The predicted class and one `probability_<class>` column per class."""
        frame = pd.DataFrame(
            {f"probability_{c}": predictions[:, i].astype(np.float64) for i, c in enumerate(spec_classes)}
        )
        frame.insert(0, "prediction", [spec_classes[i] for i in predictions.argmax(axis=1)])
        return frame
