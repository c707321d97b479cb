"""Markdown for Prefect artifacts: the validation report and one page per round (pure)."""

import math
from collections.abc import Sequence

from fedflow.rounds import LISTED_SITES, RoundMetrics
from validation import ValidationSummary


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
