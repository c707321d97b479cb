"""Task kinds on hand-computed values."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from fedflow.domain import DomainSpec, TargetSpec
from fedflow.local import balanced_class_weights
from fedflow.tasks import TASKS, get_task


def _spec(**target: object) -> DomainSpec:
    task = (
        "multiclass"
        if "classes" in target
        else "binary"
        if ("positive_value" in target or "positive_above" in target)
        else "regression"
    )
    return DomainSpec(name="t", task=task, target=TargetSpec(column="y", **target), sites={"a": "a.csv"})  # type: ignore[arg-type]


def test_regression_metrics_by_hand() -> None:
    m = get_task("regression").metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 4.0, 3.0]))
    assert m["loss"] == pytest.approx(4 / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(4 / 3))
    assert m["mae"] == pytest.approx(2 / 3)
    assert m["r2"] == pytest.approx(1 - (4 / 3) / (2 / 3))


def test_multiclass_labels_and_metrics_by_hand() -> None:
    task = get_task("multiclass")
    spec = _spec(classes=["CH", "MM", "XX"])
    labels = task.labels(pd.DataFrame({"y": ["MM", "CH", "XX", "MM"]}), spec)
    assert labels.tolist() == [1, 0, 2, 1]
    probs = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.5, 0.2, 0.3], [0.1, 0.8, 0.1]])
    m = task.metrics(labels, probs)
    assert m["accuracy"] == pytest.approx(0.75)  # the XX row is predicted CH
    assert m["balanced_accuracy"] == pytest.approx((1 + 1 + 0) / 3)
    assert m["loss"] == pytest.approx(-np.mean(np.log([0.7, 0.6, 0.3, 0.8])))
    with pytest.raises(ValueError, match="ZZ"):
        task.labels(pd.DataFrame({"y": ["ZZ"]}), spec)


def test_binary_positive_value_and_pr_auc() -> None:
    task = get_task("binary")
    labels = task.labels(pd.DataFrame({"y": ["good", "bad", "good", "bad"]}), _spec(positive_value="bad"))
    assert labels.tolist() == [0, 1, 0, 1]
    m = task.metrics(labels, np.array([0.1, 0.9, 0.4, 0.3]))
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)


def test_balanced_class_weights_by_hand() -> None:
    # 90 negatives, 10 positives: n / (k * n_c) = 100/180 and 100/20
    assert balanced_class_weights({"0": 90, "1": 10}, 2) == pytest.approx([100 / 180, 5.0])


def test_binary_class_weights_become_pos_weight() -> None:
    task = get_task("binary")
    logits, targets = torch.tensor([[0.3], [-1.0]]), torch.tensor([1.0, 0.0])
    weighted = task.loss(logits, targets, torch.tensor([0.5, 2.0]))
    by_hand = (
        -(
            4.0 * torch.log(torch.sigmoid(torch.tensor(0.3)))
            + torch.log(1 - torch.sigmoid(torch.tensor(-1.0)))
        )
        / 2
    )
    assert float(weighted) == pytest.approx(float(by_hand), rel=1e-6)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_output_frame_has_a_prediction_column(name: str) -> None:
    task = get_task(name)
    predictions = {
        "multiclass": np.array([[0.3, 0.7], [0.9, 0.1]]),
        "language": np.array([[-1.0, -2.0, 0.0], [-0.5, -0.5, -0.5]]),  # next-token log-probs, 0 = padding
    }.get(name, np.array([0.3, 0.8]))
    frame = task.output_frame(predictions, ["CH", "MM"])
    column = "perplexity" if name == "language" else "prediction"
    assert column in frame.columns and len(frame) == 2 and frame[column].notna().all()
