"""Every registered task kind declares the range of each of its metrics, and its honest metrics lie in it:
the coordinator drops a site's evaluation that reports a value outside (fedflow/federation/claims.py)."""

import math

import numpy as np
import pytest

from fedflow.tasks import TASKS, get_task

# Hand-made labels and predictions per kind (shaped as its `predict` returns them).
EXAMPLES: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "binary": (np.array([0.0, 1.0, 1.0]), np.array([0.3, 0.8, 0.4])),
    "multiclass": (np.array([1, 0, 2]), np.array([[0.3, 0.7, 0.0], [0.9, 0.1, 0.0], [0.5, 0.2, 0.3]])),
    "regression": (np.array([1.0, 2.0, 4.0]), np.array([0.3, 0.8, 5.0])),
    # token ids (-1 = padding) and each next token's log-probability (0 at padding)
    "language": (np.array([[5, 6, 7], [5, 8, -1]]), np.array([[-1.0, -2.0], [-0.5, 0.0]])),
}


def test_every_registered_task_has_an_example() -> None:
    assert sorted(EXAMPLES) == sorted(TASKS)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_metric_has_a_range(name: str) -> None:
    task = get_task(name)
    assert set(task.metric_ranges) == set(task.metric_names)
    for metric, (low, high) in task.metric_ranges.items():
        assert low < high and not math.isnan(low) and not math.isnan(high), metric


@pytest.mark.parametrize("name", sorted(TASKS))
def test_honest_metrics_lie_in_their_ranges(name: str) -> None:
    task = get_task(name)
    labels, predictions = EXAMPLES[name]
    for metric, value in task.metrics(labels, predictions).items():
        low, high = task.metric_ranges[metric]
        assert low <= value <= high, (metric, value)


def test_the_ranges_by_hand() -> None:
    assert get_task("binary").metric_ranges["roc_auc"] == (0.0, 1.0)
    assert get_task("binary").metric_ranges["loss"] == (0.0, math.inf)
    assert get_task("regression").metric_ranges["r2"] == (-math.inf, 1.0)
    assert get_task("regression").metric_ranges["mae"] == (0.0, math.inf)
    assert get_task("language").metric_ranges["perplexity"] == (1.0, math.inf)
    assert get_task("multiclass").metric_ranges["macro_f1"] == (0.0, 1.0)
