"""Evaluation metrics as pure functions of labels and predicted probabilities."""

import math

import numpy as np
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

# Larger is better for these; the others (loss) are minimised.
HIGHER_IS_BETTER = {"accuracy", "balanced_accuracy", "roc_auc"}


def binary_metrics(
    labels: np.ndarray, probabilities: np.ndarray, *, threshold: float = 0.5
) -> dict[str, float]:
    """Log loss, accuracy, balanced accuracy and ROC AUC (NaN when only one class is present)."""
    labels = labels.astype(np.float64)
    probs = np.clip(probabilities.astype(np.float64), 1e-7, 1 - 1e-7)
    predictions = (probs >= threshold).astype(np.float64)
    loss = float(-np.mean(labels * np.log(probs) + (1 - labels) * np.log(1 - probs)))
    both_classes = len(np.unique(labels)) == 2
    return {
        "loss": loss,
        "accuracy": float(np.mean(predictions == labels)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predictions))
        if both_classes
        else math.nan,
        "roc_auc": float(roc_auc_score(labels, probs)) if both_classes else math.nan,
    }


def weighted_average(values: list[float], weights: list[float]) -> float:
    """Weighted mean that skips NaN values (and their weights); NaN when nothing is left."""
    pairs = [(v, w) for v, w in zip(values, weights, strict=True) if not math.isnan(v)]
    total = sum(w for _, w in pairs)
    if not pairs or total <= 0:
        return math.nan
    return sum(v * w for v, w in pairs) / total


def worst(values: dict[str, float], metric: str) -> tuple[str, float]:
    """The site with the worst value of `metric` (ignoring NaN), and that value."""
    finite = {site: v for site, v in values.items() if not math.isnan(v)}
    if not finite:
        return "", math.nan
    pick = min if metric in HIGHER_IS_BETTER else max
    site = pick(finite, key=lambda s: finite[s])
    return site, finite[site]
