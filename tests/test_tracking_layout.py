"""What a user sees first in MLflow and Prefect: headline metrics, per-site tables, the worst site
named, each round's page in both UIs (keyed and ordered in Prefect), a readable validation file."""

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from conftest import mlflow_store_in
from mlflow.tracking import MlflowClient

from domains import Domain, available_domains, load_domain
from fedflow.config import FederationConfig, LocalTrainConfig
from fedflow.rounds import RoundMetrics
from fedflow.sitedata import read_site_frame
from fedflow.tabular import example_frame, fit_preprocessor, merge_statistics, site_statistics
from fedflow.tasks import TABULAR, get_task
from flows.reports import artifact_key, round_label, run_summary_markdown, with_summary

SITES = ["cleveland", "switzerland", "va_long_beach"]  # hungary fails its checks (ages of 150)


def _download_json(run_id: str, path: str, store: str) -> Any:
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, tracking_uri=store)
    return json.loads(Path(local).read_text())


def _table(run_id: str, path: str, store: str) -> pd.DataFrame:
    """An MLflow table artifact (`log_table` writes pandas' `split` orientation)."""
    split = _download_json(run_id, path, store)
    return pd.DataFrame(split["data"], columns=split["columns"])


def _nulls(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_nulls(v) for v in value.values()) + sum(v is None for v in value.values())
    if isinstance(value, list):
        return sum(_nulls(v) for v in value) + sum(v is None for v in value)
    return 0


@pytest.fixture(scope="module")
def layout_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One MLflow store (SQLite in a temporary folder) for the module's one federation."""
    with (
        pytest.MonkeyPatch.context() as patch,
        mlflow_store_in(tmp_path_factory.mktemp("layout"), patch) as uri,
    ):
        yield uri


@pytest.fixture(scope="module")
def layout_run(prefect_api: None, layout_store: str, healthcare: Domain) -> dict[str, Any]:
    """Two rounds with one site left out and the audit on (two shadow models: LiRA runs too)."""
    from conftest import sites_file_with_broken_hungary

    from flows.coordinator import SiteSelection, federated_training

    config = FederationConfig(
        rounds=2, seed=3, local=LocalTrainConfig(epochs=1, learning_rate=0.05), audit_shadow_models=2
    )
    folder = Path(layout_store.removeprefix("sqlite:///")).parent
    sites = SiteSelection(files=str(sites_file_with_broken_hungary(healthcare, folder)))
    result = federated_training(domain="healthcare", federation=config, sites=sites, run_name="Layout Test_1")
    client = MlflowClient(layout_store)
    return {"result": result, "client": client, "run": client.get_run(result.mlflow_run_id)}


def test_the_run_opens_on_what_matters(layout_run: dict[str, Any], layout_store: str) -> None:
    result, client, run = layout_run["result"], layout_run["client"], layout_run["run"]
    run_id = run.info.run_id
    assert sorted(result.per_site) == SITES
    metrics, tags = run.data.metrics, run.data.tags

    # The audit: no per-site metric sections, one table, the most exposed site per attack.
    assert not [k for k in metrics if k.startswith("audit/")]
    audit = _table(run_id, "audit/membership_inference.json", layout_store)
    assert sorted(audit["site"]) == SITES
    attacks = [c for c in audit.columns if c != "site"]
    assert {"mia_loss_auc", "mia_lira_auc"} <= set(attacks)
    for attack in attacks:
        assert metrics[f"privacy/{attack}_max"] == pytest.approx(audit[attack].max())
        assert audit.set_index("site").loc[tags[f"privacy.{attack}_max.site"], attack] == audit[attack].max()

    # Every site's metrics in one table, a row per site and round, chartable across sites.
    table = _table(run_id, "rounds/site_metrics.json", layout_store)
    assert sorted(zip(table["round"], table["site"], strict=True)) == [(r, s) for r in (1, 2) for s in SITES]
    assert table["trained"].all() and {"roc_auc", "loss"} <= set(table.columns)
    logged = json.loads(tags["mlflow.loggedArtifacts"])
    assert {"path": "rounds/site_metrics.json", "type": "table"} in logged

    # The worst site is named, and it is the one with the lowest ROC AUC in the last round.
    last = table[table["round"] == 2].set_index("site")
    assert tags["worst.roc_auc.site"] == last["roc_auc"].idxmin()
    assert metrics["worst/roc_auc"] == pytest.approx(last["roc_auc"].min())
    assert tags["worst.loss.site"] == last["loss"].idxmax()

    # Each round's page in MLflow, zero-padded so that files sort in round order.
    pages = [a.path for a in client.list_artifacts(run_id, "rounds")]
    assert {"rounds/round-001.md", "rounds/round-002.md"} <= set(pages)
    page = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="rounds/round-002.md", tracking_uri=layout_store
        )
    ).read_text()
    assert "round 2 of 2" in page and "worst site" in page and tags["worst.roc_auc.site"] in page

    # The plot where the compare page finds it; the description ends on the outcome.
    top = [a.path for a in client.list_artifacts(run_id)]
    assert "metrics_by_round.png" in top and "plots" not in top
    note = tags["mlflow.note.content"]
    assert "fedflow outcome" in note and f"version {result.champion_version}" in note
    assert tags["worst.roc_auc.site"] in note and "mia_lira_auc" in note


def test_round_artifacts_are_keyed_and_in_order(layout_run: dict[str, Any]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    keys = ["layout-test-1-round-001", "layout-test-1-round-002"]
    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
    by_key = {a.key: a for a in artifacts}
    assert sorted(by_key) == keys
    for number, key in enumerate(keys, start=1):
        assert by_key[key].description.startswith(f"Round {number} of 2 — roc_auc ")
        assert f"round {number} of 2" in str(by_key[key].data)


def test_validation_file_lists_failures_first_without_nulls(
    layout_run: dict[str, Any], layout_store: str
) -> None:
    run_id = layout_run["run"].info.run_id
    hungary = _download_json(run_id, "validation/hungary.json", layout_store)
    assert list(hungary) == ["site", "success", "rows", "failed", "passed"]
    assert hungary["success"] is False and _nulls(hungary) == 0
    (failed,) = [c for c in hungary["failed"] if c.get("column") == "age"]
    assert failed["expectation"] == "expect_column_values_to_be_between"
    assert re.fullmatch(r"3 of \d+ rows unexpected", failed["detail"])
    assert "150" not in json.dumps(hungary), "counts, never values"
    cleveland = _download_json(run_id, "validation/cleveland.json", layout_store)
    assert cleveland["failed"] == [] and len(cleveland["passed"]) > 5 and _nulls(cleveland) == 0


def _tabular_domains() -> list[str]:
    return [name for name in available_domains() if get_task(load_domain(name).spec.task).serving == TABULAR]


@pytest.mark.parametrize("name", _tabular_domains())
def test_input_example_respects_the_declared_ranges(name: str) -> None:
    domain = load_domain(name)
    spec = domain.spec
    frames = [read_site_frame(domain.site_path(site), spec, site=site) for site in spec.site_names]
    stats = merge_statistics(site_statistics(frame, spec) for frame in frames)
    example = example_frame(fit_preprocessor(stats, spec), rows=4)
    for column in spec.numeric:
        values = example[column.name]
        if column.min is not None:
            assert (values >= column.min).all(), (column.name, list(values))
        if column.max is not None:
            assert (values <= column.max).all(), (column.name, list(values))
        whole = [b for b in (column.min, column.max) if b is not None]
        if whole and all(float(b).is_integer() for b in whole):
            assert all(float(v).is_integer() for v in values), (column.name, list(values))


def test_input_example_stays_inside_a_range_its_spread_would_leave() -> None:
    from fedflow.tabular import NumericTransform, Preprocessor

    # A count column that is mostly 0: the mean minus half a standard deviation is negative.
    counts = NumericTransform(name="delinq", mean=0.3, std=0.8, missing_indicator=False, min=0, max=50)
    share = NumericTransform(name="share", mean=0.95, std=0.3, missing_indicator=False, min=0.05, max=0.99)
    example = example_frame(Preprocessor(numeric=[counts, share], categorical=[]), rows=2)
    assert list(example["delinq"]) == [0, 1]
    assert list(example["share"]) == [0.8, 0.99]


def test_round_labels_and_keys_sort_in_order() -> None:
    labels = [round_label(n, 120) for n in (2, 10, 100)]
    assert labels == ["round-002", "round-010", "round-100"] == sorted(labels)
    assert round_label(7, 20) == "round-007" and round_label(7, 2000) == "round-0007"
    key = artifact_key("Healthcare_FedProx 2024-05-01T10:00 seed0", "round-007")
    assert key == "healthcare-fedprox-2024-05-01t10-00-seed0-round-007"
    assert re.fullmatch(r"[a-z0-9-]+", key)


def test_the_summary_is_appended_to_a_description_and_replaced_on_rerun() -> None:
    final = RoundMetrics(
        mean={"roc_auc": 0.8, "loss": 0.5},
        per_site={"a": {"roc_auc": 0.9, "loss": 0.4}, "b": {"roc_auc": 0.7, "loss": 0.6}},
        worst={"roc_auc": ("b", 0.7), "loss": ("b", 0.6)},
    )
    first = run_summary_markdown(rounds=3, final=final, champion="Champion: v2.", audit={})
    assert "| roc_auc | 0.8000 | b 0.7000 |" in first and "3 round(s)" in first
    links = "[Prefect flow run](http://localhost:4200/runs/flow-run/1)"
    described = with_summary(links, first)
    assert described.startswith(links) and described.endswith(first)
    second = run_summary_markdown(
        rounds=4, final=final, champion="Champion: v3.", audit={"mia_loss_auc": ("a", 0.55)}
    )
    again = with_summary(described, second)
    assert again.startswith(links) and again.count("fedflow outcome") == 1 and "v2" not in again
    assert "mia_loss_auc: 0.5500 at a" in again
    assert with_summary("", first) == first


def test_round_axis_has_whole_ticks() -> None:
    from flows.plots import metrics_figure

    history = [{"global/loss": 1.0 / n, "site/a/loss": 1.2 / n} for n in range(1, 5)]
    figure = metrics_figure(history, ["loss"], ["a"])
    figure.canvas.draw()
    ticks = [t for t in figure.axes[0].get_xticks() if 1 <= t <= 4]
    assert ticks and all(math.isclose(t, round(t)) for t in ticks)


def test_compact_validation_summary_names_failures_and_keeps_counts_only_where_they_say_something() -> None:
    from fedflow.validation_summary import CheckResult, ValidationSummary

    between = {"expectation": "expect_column_values_to_be_between", "element_count": 10}
    summary = ValidationSummary(
        site="a",
        success=False,
        rows=10,
        checks=[
            CheckResult(column="age", success=True, unexpected_count=0, unexpected_percent=0.0, **between),
            CheckResult(column="chol", success=False, unexpected_count=3, unexpected_percent=30.0, **between),
            CheckResult(column="ca", success=True, unexpected_count=1, unexpected_percent=10.0, **between),
        ],
    )
    assert summary.compact() == {
        "site": "a",
        "success": False,
        "rows": 10,
        "failed": [
            {"expectation": between["expectation"], "column": "chol", "detail": "3 of 10 rows unexpected"}
        ],
        "passed": [
            {"expectation": between["expectation"], "column": "age"},
            # passed with `mostly`: the rows let through are worth showing
            {
                "expectation": between["expectation"],
                "column": "ca",
                "unexpected_count": 1,
                "element_count": 10,
            },
        ],
    }


def test_many_sites_are_drawn_without_a_legend_that_hides_the_plot() -> None:
    import warnings

    from flows.plots import metrics_figure

    sites = [f"client-{i:03d}" for i in range(100)]
    history = [{**{f"site/{s}/loss": 0.5 for s in sites}, "global/loss": 0.4} for _ in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when a huge legend defeats the layout
        figure = metrics_figure(history, ["loss"], sites)
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["global"]
    assert len(figure.axes[0].lines) == 101
