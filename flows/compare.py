"""`fedflow compare`: federations side by side, in the terminal and as an MLflow comparison run.

The table is built by pure functions from `RunSummary` values (one per federation); reading
them from MLflow, and logging the result, are the functions at the end. The comparison is
logged as its own run in the domain's experiment (`compare-<run names>`, tag
`fedflow.kind=comparison`): the federations' runs stay as they were recorded.
"""

import math
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal

import mlflow
import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from fedflow.errors import FedflowError
from fedflow.tasks import HIGHER_IS_BETTER

KIND_TAG = "fedflow.kind"
COMPARISON_KIND = "comparison"
COMPARED_RUNS_TAG = "fedflow.compared_runs"
DESCRIPTION_TAG = "mlflow.note.content"
CHAMPION_ALIAS = "champion"
RowKind = Literal["text", "metric", "bytes", "seconds"]


class CompareError(FedflowError):
    """The runs to compare could not be found or do not belong together."""


@dataclass(frozen=True)
class RunSummary:
    """What the comparison shows of one federation (read from its MLflow run)."""

    run_id: str
    name: str
    status: str
    strategy: str
    privacy: str
    epsilon: float | None
    secure_aggregation: str
    codec: str
    rounds_completed: int
    rounds_planned: str
    wall_seconds: float | None
    bytes_sent: float | None
    bytes_received: float | None
    global_metrics: dict[str, float] = field(default_factory=dict)
    site_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    champion_version: str | None = None


@dataclass(frozen=True)
class ComparisonRow:
    """One line of the table: a quantity, its value per run, and which run is best (metrics)."""

    section: str
    label: str
    values: list[str | float | None]
    kind: RowKind = "text"
    best: int | None = None


@dataclass(frozen=True)
class Comparison:
    """The table: one column per run (in the order given), rows grouped in sections."""

    runs: list[str]
    rows: list[ComparisonRow]


def _best(values: Sequence[float | None], higher_is_better: bool) -> int | None:
    """Index of the best value, when at least two runs have one and they differ."""
    present = [(v, i) for i, v in enumerate(values) if v is not None and not math.isnan(v)]
    if len(present) < 2 or len({v for v, _ in present}) < 2:
        return None
    return (max(present) if higher_is_better else min(present))[1]


def _metric_row(section: str, label: str, metric: str, values: list[float | None]) -> ComparisonRow:
    best = _best(values, metric in HIGHER_IS_BETTER)
    return ComparisonRow(section, label, list(values), kind="metric", best=best)


def _ordered_metrics(names: Collection[str], ranking_metric: str | None) -> list[str]:
    """The ranking metric first, then the others alphabetically."""
    rest = sorted(n for n in names if n != ranking_metric)
    return ([ranking_metric] if ranking_metric in names else []) + rest


def _worst_site(summary: RunSummary, metric: str) -> str | None:
    values = {
        s: m[metric] for s, m in summary.site_metrics.items() if not math.isnan(m.get(metric, math.nan))
    }
    if not values:
        return None
    pick = min if metric in HIGHER_IS_BETTER else max
    site = pick(values, key=lambda s: values[s])
    return f"{site} {values[site]:.4f}"


def _run_rows(summaries: Sequence[RunSummary]) -> list[ComparisonRow]:
    def row(label: str, values: list[str | float | None], kind: RowKind = "text") -> ComparisonRow:
        return ComparisonRow("run", label, values, kind=kind)

    return [
        row("run id", [s.run_id for s in summaries]),
        row("status", [s.status for s in summaries]),
        row("strategy", [s.strategy for s in summaries]),
        row("privacy", [s.privacy for s in summaries]),
        row("ε spent", [s.epsilon for s in summaries], "metric"),
        row("secure aggregation", [s.secure_aggregation for s in summaries]),
        row("codec", [s.codec for s in summaries]),
        row("rounds", [f"{s.rounds_completed}/{s.rounds_planned}" for s in summaries]),
        row("wall time", [s.wall_seconds for s in summaries], "seconds"),
        row("bytes sent", [s.bytes_sent for s in summaries], "bytes"),
        row("bytes received", [s.bytes_received for s in summaries], "bytes"),
        row("champion", [f"version {s.champion_version}" if s.champion_version else None for s in summaries]),
    ]


def build_comparison(
    summaries: Sequence[RunSummary], *, ranking_metric: str | None, site_metrics: Sequence[str] = ()
) -> Comparison:
    """The comparison table of `summaries` (pure).

    Rows: what each run is (strategy, privacy, secure aggregation, codec, rounds, wall time,
    bytes, champion), the final global metrics with the ranking metric first and the site that
    is worst on it, then one block per site with `site_metrics` (default: the ranking metric).
    """
    rows = _run_rows(summaries)
    names = {m for s in summaries for m in s.global_metrics}
    for metric in _ordered_metrics(names, ranking_metric):
        label = f"{metric} (ranking)" if metric == ranking_metric else metric
        rows.append(_metric_row("global", label, metric, [s.global_metrics.get(metric) for s in summaries]))
    if ranking_metric is not None:
        worst: list[str | float | None] = [_worst_site(s, ranking_metric) for s in summaries]
        rows.append(ComparisonRow("global", f"worst site ({ranking_metric})", worst))
    shown = list(site_metrics) or ([ranking_metric] if ranking_metric else [])
    for site in sorted({site for s in summaries for site in s.site_metrics}):
        section = (
            "sites" if len(shown) == 1 else f"site {site}"
        )  # a rule between sites only when several rows each
        for metric in shown:
            values = [s.site_metrics.get(site, {}).get(metric) for s in summaries]
            if any(v is not None for v in values):
                rows.append(_metric_row(section, f"{site}: {metric}", metric, values))
    return Comparison(runs=[s.name for s in summaries], rows=rows)


def format_value(value: str | float | None, kind: RowKind) -> str:
    """A cell as the terminal and the markdown show it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, str):
        return value
    if kind == "bytes":
        return _human_bytes(value)
    if kind == "seconds":
        return f"{value:.1f} s" if value < 120 else f"{int(value // 60)} min {value % 60:.0f} s"
    return f"{value:.4f}"


def _human_bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def comparison_frame(comparison: Comparison) -> pd.DataFrame:
    """One row per quantity, one column per run, values as displayed (for CSV and `log_table`)."""
    records = []
    for row in comparison.rows:
        record = {"section": row.section, "quantity": row.label}
        for index, name in enumerate(comparison.runs):
            record[f"{index + 1}. {name}"] = format_value(row.values[index], row.kind)
        records.append(record)
    return pd.DataFrame.from_records(records)


def comparison_markdown(comparison: Comparison) -> str:
    """A markdown table; the best run of a metric row in bold."""
    header = "| quantity | " + " | ".join(comparison.runs) + " |"
    lines = [header, "|---|" + "---|" * len(comparison.runs)]
    for row in comparison.rows:
        cells = [format_value(v, row.kind) for v in row.values]
        if row.best is not None:
            cells[row.best] = f"**{cells[row.best]}**"
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- reading from MLflow ------------------------------------------------------------------------


def _options(params: dict[str, str], prefix: str) -> str:
    """`key=value` of the params under `prefix` that are set, e.g. ` (mu=0.01)`."""
    found = {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix) and v not in ("None", "")}
    return " (" + ", ".join(f"{k}={v}" for k, v in sorted(found.items())) + ")" if found else ""


def _privacy(params: dict[str, str]) -> str:
    mode = params.get("privacy.mode", "off")
    central = "off" if mode == "off" else f"client-level DP, {mode}"
    dp_sgd = params.get("local.dp_sgd", "None") not in ("None", "") or any(
        k.startswith("local.dp_sgd.") and v not in ("None", "") for k, v in params.items()
    )
    return central if not dp_sgd else ("DP-SGD" if central == "off" else f"{central} + DP-SGD")


def _history_total(client: MlflowClient, run_id: str, key: str) -> tuple[float | None, int]:
    """The sum of a per-round metric over its rounds (the last value of each), and how many rounds."""
    per_step = {
        m.step: m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp)
    }
    return (sum(per_step.values()) if per_step else None), len(per_step)


def _wall_seconds(run: Run) -> float | None:
    start = run.info.start_time
    if start is None:
        return None
    end = run.info.end_time or int(time.time() * 1000)
    return (end - start) / 1000


def _site_metrics(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "site":
            out.setdefault(parts[1], {})[parts[2]] = value
    return out


def read_summary(client: MlflowClient, run: Run, champion_run: tuple[str, str] | None) -> RunSummary:
    """A federation's run as the table shows it; `champion_run` is (version, run id) of the champion."""
    params, metrics, run_id = run.data.params, run.data.metrics, run.info.run_id
    sent, rounds = _history_total(client, run_id, "network/bytes_sent")
    received, _ = _history_total(client, run_id, "network/bytes_received")
    epsilon = metrics.get("privacy/epsilon", metrics.get("privacy/dp_sgd_epsilon_max"))
    secure = params.get("secure_aggregation.enabled", "False") == "True"
    return RunSummary(
        run_id=run_id,
        name=run.info.run_name or run_id,
        status=run.info.status,
        strategy=params.get("strategy.name", "?") + _options(params, "strategy.options."),
        privacy=_privacy(params),
        epsilon=epsilon,
        secure_aggregation="on" if secure else "off",
        codec=params.get("compression.codec", "none") + _options(params, "compression.options."),
        rounds_completed=rounds,
        rounds_planned=params.get("rounds", "?"),
        wall_seconds=_wall_seconds(run),
        bytes_sent=sent,
        bytes_received=received,
        global_metrics={k.removeprefix("global/"): v for k, v in metrics.items() if k.startswith("global/")},
        site_metrics=_site_metrics(metrics),
        champion_version=champion_run[0] if champion_run and champion_run[1] == run_id else None,
    )


def champion_of(client: MlflowClient, domain: str) -> tuple[str, str] | None:
    """(version, run id) of the version holding `<domain>-global@champion`, if any."""
    try:
        holder = client.get_model_version_by_alias(f"{domain}-global", CHAMPION_ALIAS)
    except MlflowException:
        return None
    return str(holder.version), str(holder.run_id or holder.tags.get("run_id", ""))


def ranking_metric(domain: str) -> str | None:
    """The metric the domain ranks its versions on (its config's, else its task's default)."""
    from domains import load_domain
    from fedflow.tasks import get_task

    try:
        spec = load_domain(domain, with_model=False).spec
        return spec.champion_metric or get_task(spec.task).default_champion_metric
    except (FedflowError, ValueError, OSError):
        return None  # an experiment whose domain folder is not here: no ranking


@dataclass(frozen=True)
class CompareRequest:
    """Which runs: by id or name, or the last `last` federations of `domain`."""

    runs: list[str]
    domain: str | None = None
    last: int | None = None


def _is_comparison(run: Run) -> bool:
    return run.data.tags.get(KIND_TAG) == COMPARISON_KIND


def _experiment(client: MlflowClient, domain: str) -> str:
    experiment = client.get_experiment_by_name(domain)
    if experiment is None or experiment.lifecycle_stage != "active":
        names = sorted(e.name for e in client.search_experiments() if e.name != "Default")
        known = ", ".join(names) if names else "none yet (run a federation first)"
        raise CompareError(
            f"no MLflow experiment {domain!r} in {mlflow.get_tracking_uri()}; domains logged: {known}"
        )
    return str(experiment.experiment_id)


def _by_identifier(client: MlflowClient, identifier: str, experiment_ids: list[str]) -> Run:
    """A run by its id, else by its name (unique among the federations searched)."""
    try:
        return client.get_run(identifier)
    except MlflowException:
        pass
    quoted = identifier.replace("\\", "\\\\").replace("'", "\\'")
    found = [
        run
        for run in client.search_runs(experiment_ids, filter_string=f"attributes.run_name = '{quoted}'")
        if not _is_comparison(run)
    ]
    if not found:
        raise CompareError(f"no run with id or name {identifier!r} in {mlflow.get_tracking_uri()}")
    if len(found) > 1:
        ids = ", ".join(run.info.run_id for run in found)
        raise CompareError(f"{len(found)} runs are named {identifier!r} (ids {ids}): give the run id")
    return found[0]


def _last_runs(client: MlflowClient, experiment_id: str, domain: str, last: int) -> list[Run]:
    recent = [
        run
        for run in client.search_runs(
            [experiment_id], order_by=["attributes.start_time DESC"], max_results=last + 50
        )
        if not _is_comparison(run)
    ][:last]
    if not recent:
        raise CompareError(
            f"the experiment {domain!r} has no federation runs yet: run `fedflow run {domain}`"
        )
    return list(reversed(recent))  # oldest first: left to right in time


def find_runs(client: MlflowClient, request: CompareRequest) -> list[Run]:
    """The runs the request names (in its order), or the domain's last N, oldest first."""
    if request.runs and request.last is not None:
        raise CompareError("give runs to compare or --last N, not both")
    if not request.runs:
        if request.domain is None:
            raise CompareError("say which runs: run ids or names, or --domain DOMAIN [--last N]")
        experiment_id = _experiment(client, request.domain)
        return _last_runs(client, experiment_id, request.domain, request.last or 2)
    if request.domain is not None:
        experiment_ids = [_experiment(client, request.domain)]
    else:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    runs = [_by_identifier(client, identifier, experiment_ids) for identifier in request.runs]
    if len({run.info.run_id for run in runs}) < len(runs):
        raise CompareError("a run is named twice: give each run once")
    return runs


def domain_of(client: MlflowClient, runs: Sequence[Run]) -> tuple[str, str]:
    """(domain, experiment id) the runs share; runs of different domains are refused."""
    experiments = {run.info.experiment_id for run in runs}
    if len(experiments) > 1:
        names = sorted(str(client.get_experiment(e).name) for e in experiments)
        raise CompareError(
            f"the runs belong to different domains ({', '.join(names)}): compare runs of one domain"
        )
    (experiment_id,) = experiments
    return str(client.get_experiment(experiment_id).name), str(experiment_id)


def comparison_run_name(names: Sequence[str]) -> str:
    """`compare-<a>-vs-<b>…`, shortened to fit MLflow's run name field."""
    name = "compare-" + "-vs-".join(names)
    return name if len(name) <= 200 else f"compare-{len(names)}-runs-{names[-1][:150]}"


def log_comparison(
    client: MlflowClient, experiment_id: str, comparison: Comparison, compared: Sequence[Run]
) -> str:
    """Log the table as its own run (markdown description, `comparison.md`, `.csv`, MLflow table)."""
    markdown = comparison_markdown(comparison)
    tags = {
        KIND_TAG: COMPARISON_KIND,
        COMPARED_RUNS_TAG: ",".join(run.info.run_id for run in compared),
        DESCRIPTION_TAG: "Comparison of federations (`fedflow compare`); bold: the best run of a metric.\n\n"
        + markdown,
    }
    run = client.create_run(experiment_id, run_name=comparison_run_name(comparison.runs), tags=tags)
    run_id = run.info.run_id
    frame = comparison_frame(comparison)
    client.log_text(run_id, markdown, "comparison.md")
    client.log_text(run_id, frame.to_csv(index=False), "comparison.csv")
    client.log_table(run_id, frame, "comparison.json")
    client.set_terminated(run_id, "FINISHED")
    return str(run_id)
