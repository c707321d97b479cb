"""`fedflow compare`: the pure table builder, and two real federations compared from MLflow."""

from pathlib import Path

from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from domains import Domain
from fedflow.cli import app
from flows.compare import (
    COMPARISON_KIND,
    KIND_TAG,
    RunSummary,
    build_comparison,
    comparison_markdown,
    comparison_run_name,
    format_value,
)
from flows.coordinator import federated_training


def _summary(name: str, roc_auc: float, loss: float, sites: dict[str, float], **extra: object) -> RunSummary:
    values: dict[str, object] = {
        "run_id": f"id-{name}",
        "name": name,
        "status": "FINISHED",
        "strategy": "fedavg",
        "privacy": "off",
        "epsilon": None,
        "secure_aggregation": "off",
        "codec": "none",
        "rounds_completed": 2,
        "rounds_planned": "2",
        "wall_seconds": 75.0,
        "bytes_sent": 2048.0,
        "bytes_received": 1024.0,
        "global_metrics": {"loss": loss, "accuracy": 0.5, "roc_auc": roc_auc},
        "site_metrics": {site: {"roc_auc": value, "loss": 1.0} for site, value in sites.items()},
        **extra,
    }
    return RunSummary(**values)  # type: ignore[arg-type]


def test_the_ranking_metric_comes_first_and_the_best_run_of_each_metric_is_marked() -> None:
    a = _summary("a", 0.70, 0.40, {"x": 0.9, "y": 0.5})
    b = _summary("b", 0.80, 0.60, {"x": 0.6, "y": 0.7}, strategy="fedprox (mu=0.1)", champion_version="4")
    table = build_comparison([a, b], ranking_metric="roc_auc")

    assert table.runs == ["a", "b"]
    global_rows = [row for row in table.rows if row.section == "global"]
    assert [row.label for row in global_rows] == [
        "roc_auc (ranking)",
        "accuracy",
        "loss",
        "worst site (roc_auc)",
    ]
    by_label = {row.label: row for row in table.rows}
    assert by_label["roc_auc (ranking)"].best == 1, "higher ROC AUC is better"
    assert by_label["loss"].best == 0, "lower loss is better"
    assert by_label["accuracy"].best is None, "a tie has no best run"
    assert by_label["worst site (roc_auc)"].values == ["y 0.5000", "x 0.6000"]
    assert by_label["strategy"].values == ["fedavg", "fedprox (mu=0.1)"]
    assert by_label["champion"].values == [None, "version 4"]
    # Per site: the ranking metric by default, the best site value marked per site.
    assert by_label["x: roc_auc"].values == [0.9, 0.6] and by_label["x: roc_auc"].best == 0
    assert "x: loss" not in by_label


def test_site_metrics_can_be_chosen_and_the_markdown_bolds_the_best() -> None:
    a = _summary("a", 0.70, 0.40, {"x": 0.9})
    b = _summary("b", 0.80, 0.60, {"x": 0.6})
    table = build_comparison([a, b], ranking_metric="roc_auc", site_metrics=["roc_auc", "loss"])
    assert [row.label for row in table.rows if row.label.startswith("x:")] == ["x: roc_auc", "x: loss"]
    markdown = comparison_markdown(table)
    assert "| roc_auc (ranking) | 0.7000 | **0.8000** |" in markdown
    assert "| wall time | 75.0 s | 75.0 s |" in markdown
    assert "| bytes sent | 2.0 KiB | 2.0 KiB |" in markdown


def test_values_are_formatted_for_people() -> None:
    assert format_value(None, "metric") == "–"
    assert format_value(float("nan"), "metric") == "–"
    assert format_value(0.123456, "metric") == "0.1235"
    assert format_value(512.0, "bytes") == "512 B"
    assert format_value(3 * 1024 * 1024, "bytes") == "3.0 MiB"
    assert format_value(41.25, "seconds") == "41.2 s"
    assert format_value(150.0, "seconds") == "2 min 30 s"
    assert comparison_run_name(["a", "b"]) == "compare-a-vs-b"
    assert len(comparison_run_name(["x" * 120, "y" * 120])) <= 200


def _row(output: str, label: str) -> str:
    (line,) = [line for line in output.splitlines() if line.startswith(f"│ {label} ")]
    return line


def test_compare_two_real_federations(prefect_api: None, mlflow_store: str, healthcare: Domain) -> None:
    for name, strategy in (("cmp-avg", "fedavg"), ("cmp-prox", "fedprox")):
        federated_training(
            domain="healthcare",
            overrides={"rounds": 2, "strategy.name": strategy, "audit": False, "local.epochs": 1},
            run_name=name,
        )
    client = MlflowClient(mlflow_store)
    runs = {
        run.info.run_name: run
        for run in client.search_runs([client.get_experiment_by_name("healthcare").experiment_id])
    }
    runner = CliRunner()

    by_name = runner.invoke(app, ["compare", "cmp-avg", "cmp-prox", "--domain", "healthcare"])
    assert by_name.exit_code == 0, by_name.output
    output = by_name.output
    assert "cmp-avg" in output and "cmp-prox" in output
    assert "fedavg" in _row(output, "strategy") and "fedprox" in _row(output, "strategy")
    assert "2/2" in _row(output, "rounds")
    ranking = _row(output, "roc_auc (ranking)")
    avg, prox = (runs[n].data.metrics["global/roc_auc"] for n in ("cmp-avg", "cmp-prox"))
    assert ranking.index(f"{avg:.4f}") < ranking.rindex(f"{prox:.4f}"), "each run's value, in the runs' order"
    for site in healthcare.spec.site_names:
        value = runs["cmp-prox"].data.metrics[f"site/{site}/roc_auc"]
        assert f"{value:.4f}" in _row(output, f"{site}: roc_auc")
    sent = sum(m.value for m in client.get_metric_history(runs["cmp-avg"].info.run_id, "network/bytes_sent"))
    assert f"{sent / 1024:.1f} KiB" in _row(output, "bytes sent")
    champion = client.get_model_version_by_alias("healthcare-global", "champion")
    assert f"version {champion.version}" in _row(output, "champion")

    # The comparison is its own MLflow run, with the table as artifacts and as its description.
    (logged,) = client.search_runs(
        [runs["cmp-avg"].info.experiment_id], filter_string=f"tags.`{KIND_TAG}` = '{COMPARISON_KIND}'"
    )
    assert logged.info.run_name == "compare-cmp-avg-vs-cmp-prox"
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"comparison.md", "comparison.csv", "comparison.json"} <= artifacts
    csv = Path(client.download_artifacts(logged.info.run_id, "comparison.csv")).read_text()
    assert "cmp-avg" in csv and f"{prox:.4f}" in csv
    assert f"{avg:.4f}" in logged.data.tags["mlflow.note.content"]

    # The domain's last two federations: the comparison run is not one of them; oldest first.
    last = runner.invoke(app, ["compare", "--domain", "healthcare", "--last", "2", "--no-log"])
    assert last.exit_code == 0, last.output
    header = next(line for line in last.output.splitlines() if "cmp-avg" in line)
    assert header.index("cmp-avg") < header.index("cmp-prox")
    assert len(client.search_runs([logged.info.experiment_id])) == 3, "--no-log logs nothing"

    # By run id works too; an unknown run is one clear line and a non-zero exit.
    by_id = runner.invoke(app, ["compare", runs["cmp-avg"].info.run_id, "--no-log"])
    assert by_id.exit_code == 0 and "cmp-avg" in by_id.output
    unknown = runner.invoke(app, ["compare", "cmp-avg", "no-such-run"])
    assert unknown.exit_code == 2
    assert "no run with id or name 'no-such-run'" in unknown.output and "Traceback" not in unknown.output
    other = runner.invoke(app, ["compare", "--domain", "finance"])
    assert other.exit_code == 2 and "no MLflow experiment 'finance'" in other.output
