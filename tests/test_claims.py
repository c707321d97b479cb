"""The coordinator's checks of what a site says about itself, on tiny hand-made replies."""

import math

import pandas as pd
import pytest

from fedflow.domain import CategoricalColumn, DomainSpec, NumericColumn, TargetSpec
from fedflow.federation.claims import evaluation_problem, holdout_rows, statistics_problems
from fedflow.messages import PrepareReply
from fedflow.rounds import round_metrics
from fedflow.tabular import NumericStats, site_statistics
from fedflow.tasks import get_task
from fedflow.validation_summary import ValidationSummary

SPEC = DomainSpec(
    name="t",
    task="binary",
    target=TargetSpec(column="y", positive_value="bad"),
    numeric=[NumericColumn(name="age")],
    categorical=[CategoricalColumn(name="sex", categories=["f", "m"])],
    sites={"a": "a.csv"},
)
BINARY = get_task("binary")
TRAIN = pd.DataFrame({"age": [40.0, 50.0, None], "sex": ["f", None, "m"], "y": ["bad", "ok", "ok"]})


def _reply(validated: int = 5) -> PrepareReply:
    """An honest site: 5 rows validated, the 3 of TRAIN trained on (a hold-out of 2)."""
    statistics = site_statistics(TRAIN, SPEC, BINARY.labels(TRAIN, SPEC))
    summary = ValidationSummary(site="a", success=True, rows=validated)
    return PrepareReply(summary=summary, statistics=statistics)


def _with_age(**values: float) -> PrepareReply:
    reply = _reply().model_copy(deep=True)
    assert reply.statistics is not None
    reply.statistics.numeric["age"] = reply.statistics.numeric["age"].model_copy(update=values)
    return reply


def test_honest_statistics_have_no_problems_and_declare_their_holdout() -> None:
    assert statistics_problems("a", _reply(), SPEC, BINARY) == []
    assert holdout_rows(_reply()) == 2
    assert holdout_rows(PrepareReply(summary=ValidationSummary(site="a", success=False, rows=5))) is None


@pytest.mark.parametrize(
    ("reply", "named"),
    [
        (_with_age(total=math.nan), "'age'"),
        (_with_age(total_sq=-math.inf), "'age'"),
        (_with_age(total_sq=-1.0), "'age'"),
        (_with_age(count=3, missing=-1), "'age'"),
        (_with_age(count=2, missing=0), "'age'"),  # 2 of 3 rows
        (_with_age(total_sq=100.0), "'age'"),  # (90/2)^2 > 100/2: no two values do that
        (_with_age(count=0, missing=3), "'age'"),  # no values, yet a sum
        (_reply(validated=2), "training rows"),
        (_reply().model_copy(update={"statistics": None}), "no statistics"),
    ],
)
def test_statistics_that_cannot_be_right_are_named(reply: PrepareReply, named: str) -> None:
    (problem,) = statistics_problems("a", reply, SPEC, BINARY)
    assert problem.startswith("site 'a'") and named in problem


def test_class_and_category_counts_must_add_up() -> None:
    reply = _reply().model_copy(deep=True)
    assert reply.statistics is not None
    reply.statistics.label_counts["1"] = 2
    reply.statistics.categorical["sex"].counts["f"] = -1
    problems = statistics_problems("a", reply, SPEC, BINARY)
    assert len(problems) == 2 and "class counts" in problems[0] and "'sex'" in problems[1]


def test_statistics_of_other_columns_are_refused() -> None:
    reply = _reply().model_copy(deep=True)
    assert reply.statistics is not None
    reply.statistics.numeric["salary"] = NumericStats(count=3, total=3.0, total_sq=3.0)
    assert any("other columns" in problem for problem in statistics_problems("a", reply, SPEC, BINARY))


def test_a_constant_column_is_believed_despite_rounding() -> None:
    # 0.1 three times: total^2 / count and total_sq differ by rounding only
    reply = _with_age(count=3, missing=0, total=0.1 + 0.1 + 0.1, total_sq=0.01 + 0.01 + 0.01)
    assert statistics_problems("a", reply, SPEC, BINARY) == []


HONEST = {"loss": 0.6, "accuracy": 0.5, "balanced_accuracy": 0.5, "roc_auc": 0.7, "pr_auc": 0.6}


@pytest.mark.parametrize(
    "metrics",
    [
        {**HONEST, "num_examples": 2.0},
        {**HONEST, "num_examples": 1.0, "roc_auc": math.nan},  # one class in the hold-out
        {**HONEST, "num_examples": 2.0, "accuracy": 1.0, "loss": 0.0, "personalised/roc_auc": 0.0},
    ],
)
def test_an_honest_evaluation_counts(metrics: dict[str, float]) -> None:
    assert evaluation_problem("a", metrics, 2, BINARY) is None


@pytest.mark.parametrize(
    ("metrics", "named"),
    [
        (HONEST, "no example count"),
        ({**HONEST, "num_examples": 3.0}, "hold-out of 2 rows"),
        ({**HONEST, "num_examples": 0.0}, "0.0 examples"),
        ({**HONEST, "num_examples": 1.5}, "1.5 examples"),
        ({**HONEST, "num_examples": math.inf}, "inf examples"),
        ({**HONEST, "num_examples": 2.0, "roc_auc": 1.0001}, "roc_auc"),
        ({**HONEST, "num_examples": 2.0, "loss": -1e-9}, "loss"),
        ({**HONEST, "num_examples": 2.0, "pr_auc": -math.inf}, "pr_auc"),
        ({**HONEST, "num_examples": 2.0, "personalised/accuracy": 2.0}, "personalised/accuracy"),
    ],
)
def test_an_impossible_evaluation_is_named(metrics: dict[str, float], named: str) -> None:
    problem = evaluation_problem("a", metrics, 2, BINARY)
    assert problem is not None and problem.startswith("site 'a'") and named in problem


def test_regression_and_language_ranges_apply() -> None:
    assert (
        evaluation_problem("a", {"num_examples": 1.0, "r2": -5.0, "mae": 0.0}, 1, get_task("regression"))
        is None
    )
    assert evaluation_problem("a", {"num_examples": 1.0, "r2": 1.5}, 1, get_task("regression")) is not None
    assert (
        evaluation_problem("a", {"num_examples": 1.0, "perplexity": 0.9}, 1, get_task("language")) is not None
    )


def test_round_metrics_weight_by_hold_out_and_refuse_a_non_finite_weight() -> None:
    metrics = round_metrics(
        {"a": {"num_examples": 1.0, "m": 1.0}, "b": {"num_examples": 3.0, "m": 0.0}}, ["m"]
    )
    assert metrics.mean == {"m": 0.25}
    for weight in (math.inf, math.nan, -1.0):
        with pytest.raises(ValueError, match="'b'"):
            round_metrics(
                {"a": {"num_examples": 1.0, "m": 1.0}, "b": {"num_examples": weight, "m": 0.0}}, ["m"]
            )
