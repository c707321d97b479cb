"""Task kinds on hand-computed values."""

import math
from pathlib import Path

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


# One sound domain per task kind; a new kind adds its entry here and gets every contract test below.
SOUND_TARGETS: dict[str, dict[str, object]] = {
    "binary": {"column": "y", "positive_value": "bad"},
    "multiclass": {"column": "y", "classes": ["CH", "MM", "XX"]},
    "regression": {"column": "y"},
    "language": {"column": "y"},
}


def _sound_spec(name: str) -> DomainSpec:
    return DomainSpec.model_validate(
        {"name": "t", "task": name, "target": SOUND_TARGETS[name], "sites": {"a": "a.csv"}}
    )


def test_every_registered_task_has_a_sound_spec_for_the_contract_tests() -> None:
    assert sorted(SOUND_TARGETS) == sorted(TASKS)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_declares_what_it_owns(name: str) -> None:
    from fedflow.capabilities import Refusal
    from fedflow.tasks import TABULAR, TEXT_GENERATION

    task = get_task(name)
    assert task.name == name
    assert task.higher_is_better <= set(task.metric_names)
    assert task.default_champion_metric in task.metric_names
    assert task.serving in (TABULAR, TEXT_GENERATION)
    assert isinstance(task.reads_text_folders, bool)
    assert isinstance(task.capabilities, frozenset)
    assert all(isinstance(refusal, Refusal) and refusal.reason for refusal in task.refuses)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_a_sound_spec_has_no_problems_and_its_target_checks_name_the_target(name: str) -> None:
    task, spec = get_task(name), _sound_spec(name)
    assert task.spec_problems(spec) == []
    assert all(check.column == "y" for check in task.target_expectations(spec))


@pytest.mark.parametrize("name", sorted(TASKS))
def test_class_names_are_the_label_order(name: str) -> None:
    task, spec = get_task(name), _sound_spec(name)
    names = task.class_names(spec)
    assert bool(names) == task.has_classes
    if task.has_classes:
        frame = pd.DataFrame({"y": ["bad", "good"] if name == "binary" else ["XX", "CH"]})
        labels = task.labels(frame, spec).astype(int)
        assert [names[i] for i in labels] == (["positive", "negative"] if name == "binary" else ["XX", "CH"])


@pytest.mark.parametrize("name", sorted(TASKS))
def test_example_output_is_shaped_like_what_the_model_returns(name: str) -> None:
    from fedflow.tasks import TABULAR

    task, spec = get_task(name), _sound_spec(name)
    classes = list(spec.target.classes)
    example = task.example_output(classes, 3)
    assert len(example) == 3
    if task.serving == TABULAR:  # the served model returns `output_frame` of its predictions
        rng = np.random.default_rng(0)
        predictions = rng.random((3, len(classes))) if classes else rng.random(3)
        real = task.output_frame(predictions, classes)
        assert list(example.columns) == list(real.columns)
        assert list(example.dtypes) == list(real.dtypes)
    else:
        assert list(example.columns) == ["generated"]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_only_a_kind_with_a_frozen_base_reads_text_folders_and_serves_generation(name: str) -> None:
    from fedflow.capabilities import FROZEN_BASE_MODEL
    from fedflow.tasks import TEXT_GENERATION

    task = get_task(name)
    frozen = FROZEN_BASE_MODEL in task.capabilities
    assert (task.serving == TEXT_GENERATION) == frozen
    if not frozen:
        assert task.frozen_base(_sound_spec(name)) is None


def test_examples_by_hand() -> None:
    binary = get_task("binary").example_output([], 2)
    assert binary.to_dict("list") == {"probability": [0.5, 0.5], "prediction": [1, 1]}
    multiclass = get_task("multiclass").example_output(["CH", "MM"], 1)
    assert multiclass.to_dict("list") == {
        "prediction": ["CH"],
        "probability_CH": [0.5],
        "probability_MM": [0.5],
    }
    assert get_task("regression").example_output([], 1).to_dict("list") == {"prediction": [0.0]}
    assert get_task("language").example_output([], 1).to_dict("list") == {"generated": ["…"]}


@pytest.mark.parametrize(
    ("name", "change", "problem"),
    [
        ("binary", {"target": {"column": "y"}}, "exactly one of positive_above or positive_value"),
        ("binary", {"target": {"column": "y", "positive_value": "a", "positive_above": 1}}, "exactly one"),
        ("multiclass", {"target": {"column": "y", "classes": ["a"]}}, "at least two `classes`"),
        ("language", {"numeric": [{"name": "age"}]}, "declare no features"),
        ("language", {"text": {"min_chars": 9, "max_chars": 3}}, "min_chars is larger"),
        ("language", {"model": {"lora_rank": 4}}, "model.lora_rank: Extra inputs are not permitted"),
    ],
)
def test_a_domain_is_refused_with_its_task_kinds_problem(
    name: str, change: dict[str, object], problem: str
) -> None:
    from pydantic import ValidationError

    data = {"name": "t", "task": name, "target": SOUND_TARGETS[name], "sites": {"a": "a.csv"}, **change}
    with pytest.raises(ValidationError, match=problem):
        DomainSpec.model_validate(data)


def test_an_unknown_task_lists_the_registered_ones() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown task 'survival'; choose one of"):
        DomainSpec.model_validate(
            {"name": "t", "task": "survival", "target": {"column": "y"}, "sites": {"a": "a"}}
        )


def test_higher_is_better_is_every_kinds_and_unchanged() -> None:
    from fedflow.tasks import HIGHER_IS_BETTER

    assert {"accuracy", "balanced_accuracy", "roc_auc", "pr_auc", "macro_f1", "r2"} == HIGHER_IS_BETTER
    assert frozenset().union(*(task.higher_is_better for task in TASKS.values())) == HIGHER_IS_BETTER


def test_the_language_kind_locates_its_frozen_base_by_the_weights_digest(tmp_path: Path) -> None:
    import hashlib

    (tmp_path / "model.safetensors").write_bytes(b"weights")
    spec = DomainSpec.model_validate(
        {
            "name": "t",
            "task": "language",
            "target": {"column": "y"},
            "sites": {"a": "a.csv"},
            "model": {"path": str(tmp_path)},
        }
    )
    frozen = get_task("language").frozen_base(spec)
    assert frozen is not None and frozen.location.folder == tmp_path.resolve()
    assert frozen.sha256 == hashlib.sha256(b"weights").hexdigest()
