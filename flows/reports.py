"""What a reader sees of a run (pure): the validation report, one page and one table per round,
the keys and captions that list them in order, and the run's closing summary."""

import math
import re
from collections.abc import Mapping, Sequence

from fedflow.rounds import LISTED_SITES, RoundMetrics
from validation import ValidationSummary

# Marks the summary fedflow appends to a run's description, so a rerun replaces rather than repeats it.
SUMMARY_HEADING = "### fedflow outcome"


def _fmt(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.4f}"


def _more(total: int) -> str:
    return f"… and {total - LISTED_SITES} more" if total > LISTED_SITES else ""


def validation_markdown(domain: str, summaries: Sequence[ValidationSummary]) -> str:
    """Which sites passed the data contract, and why the others were left out."""
    lines = [f"# Data validation — {domain}", "", "| site | rows | result | reasons |", "|---|---|---|---|"]
    passed = sum(s.success for s in summaries)
    # The excluded sites first: they are what a reader looks for.
    ordered = sorted(summaries, key=lambda s: s.success)[:LISTED_SITES]
    for summary in ordered:
        result = "passed" if summary.success else "**excluded**"
        reasons = "<br>".join(summary.reasons()) or "–"
        lines.append(f"| {summary.site} | {summary.rows} | {result} | {reasons} |")
    if len(summaries) > LISTED_SITES:
        lines += ["", f"{_more(len(summaries))} sites; {passed} of {len(summaries)} passed."]
    return "\n".join(lines) + "\n"


def round_markdown(
    *,
    domain: str,
    round_number: int,
    rounds: int,
    metrics: RoundMetrics,
    participants: Sequence[str],
    dropped: dict[str, str],
    version: str,
) -> str:
    """The round's federated evaluation: every site, the weighted mean and the worst site."""
    names = list(metrics.mean)
    header = "| site | " + " | ".join(names) + " |"
    lines = [
        f"# {domain} — round {round_number} of {rounds}",
        "",
        f"Trained at: {', '.join(list(participants)[:LISTED_SITES])}{_more(len(participants))}. "
        f"Global model version: **{version}**.",
        "",
        header,
        "|" + "---|" * (len(names) + 1),
    ]
    for site, values in list(metrics.per_site.items())[:LISTED_SITES]:
        lines.append(f"| {site} | " + " | ".join(_fmt(values[n]) for n in names) + " |")
    lines.append("| **weighted mean** | " + " | ".join(_fmt(metrics.mean[n]) for n in names) + " |")
    lines.append(
        "| **worst site** | "
        + " | ".join(f"{_fmt(v)} ({s})" if s else "–" for s, v in (metrics.worst[n] for n in names))
        + " |"
    )
    if dropped:
        lines += ["", "Dropped this round:"] + [
            f"- {site}: {reason}" for site, reason in list(dropped.items())[:LISTED_SITES]
        ]
        if len(dropped) > LISTED_SITES:
            lines.append(f"- {_more(len(dropped))}")
    return "\n".join(lines) + "\n"


def round_label(round_number: int, rounds: int) -> str:
    """`round-007`: zero-padded so that files and Prefect artifact keys sort in round order."""
    return f"round-{round_number:0{max(3, len(str(rounds)))}d}"


def artifact_key(federation_id: str, label: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) for the federation's `label`."""
    slug = re.sub(r"[^a-z0-9]+", "-", federation_id.lower()).strip("-") or "federation"
    return f"{slug}-{label}"


def round_description(
    round_number: int, rounds: int, metrics: RoundMetrics, metric: str, version: str
) -> str:
    """A round's caption, the round first (captions are cut): `Round 7 of 20 — roc_auc 0.8123, …`."""
    worst_site, worst_value = metrics.worst.get(metric, ("", math.nan))
    worst = f", worst {worst_site} {_fmt(worst_value)}" if worst_site else ""
    value = _fmt(metrics.mean.get(metric, math.nan))
    return f"Round {round_number} of {rounds} — {metric} {value}{worst}; model version {version}"


def site_rows(
    round_number: int, metrics: RoundMetrics, participants: Sequence[str]
) -> list[dict[str, str | int | float | bool | None]]:
    """One row per evaluated site: the round, the site, whether it trained, every metric."""
    trained = set(participants)
    rows: list[dict[str, str | int | float | bool | None]] = []
    for site, values in metrics.per_site.items():
        row: dict[str, str | int | float | bool | None] = {
            "round": round_number,
            "site": site,
            "trained": site in trained,
        }
        row.update({name: None if math.isnan(v) else v for name, v in values.items()})
        rows.append(row)
    return rows


def audit_rows(scores: Mapping[str, Mapping[str, float]]) -> list[dict[str, str | float]]:
    """The membership-inference audit as a table: one row per site, one column per attack score."""
    return [{"site": site, **values} for site, values in sorted(scores.items())]


def worst_by_score(scores: Mapping[str, Mapping[str, float]]) -> dict[str, tuple[str, float]]:
    """Per attack score, the site where the attack did best (higher is a bigger leak)."""
    worst: dict[str, tuple[str, float]] = {}
    for site, values in sorted(scores.items()):
        for name, value in values.items():
            if not math.isnan(value) and (name not in worst or value > worst[name][1]):
                worst[name] = (site, value)
    return worst


def run_summary_markdown(
    *,
    rounds: int,
    final: RoundMetrics | None,
    champion: str,
    audit: Mapping[str, tuple[str, float]],
) -> str:
    """The run's closing summary for its MLflow description: headline metrics, worst site, champion."""
    lines = [SUMMARY_HEADING, "", f"{rounds} round(s) completed. {champion}"]
    if final is not None:
        lines += ["", "| metric | weighted mean | worst site |", "|---|---|---|"]
        for name, value in final.mean.items():
            site, worst = final.worst.get(name, ("", math.nan))
            lines.append(f"| {name} | {_fmt(value)} | {f'{site} {_fmt(worst)}' if site else '–'} |")
    if audit:
        lines += [
            "",
            "Membership-inference audit, the most exposed site per attack (0.5 AUC = guessing):",
            "",
        ]
        lines += [f"- {name}: {_fmt(value)} at {site}" for name, (site, value) in audit.items()]
    return "\n".join(lines) + "\n"


def with_summary(description: str, summary: str) -> str:
    """`description` (set by others, e.g. links) with `summary` appended, replacing an earlier one."""
    kept = description.split(SUMMARY_HEADING)[0].rstrip()
    return f"{kept}\n\n{summary}" if kept else summary
