"""What a site says about itself, checked against what it declared: the coordinator believes no claim.

Pure checks over a reply's fields. A site's aggregates at preparation must be finite, non-negative
and add up to the rows it trained on, which may not exceed the rows it validated; what it reports
after evaluating may not count more examples than the hold-out it declared (rows validated minus
training rows), nor a metric outside the values that metric can take. A failed check names the
site and the field; the caller leaves the claim out (the site at preparation, its evaluation for
that round), so a forged claim weighs exactly as much as no claim.
"""

import math
from collections.abc import Mapping

from fedflow.domain import DomainSpec
from fedflow.messages import PrepareReply
from fedflow.tabular import SiteStatistics
from fedflow.tasks import TaskKind

ANY_VALUE = (-math.inf, math.inf)  # a metric a (plugin) task kind declares no range for: finite only


def _counts(site: str, field: str, counts: Mapping[str, int], rows: int) -> list[str]:
    """Problems of one set of counts that must be non-negative and add up to the site's rows."""
    negative = sorted(key for key, count in counts.items() if count < 0)
    if negative:
        return [f"site {site!r}: negative {field} ({', '.join(map(repr, negative))})"]
    if sum(counts.values()) != rows:
        return [f"site {site!r}: {field} add up to {sum(counts.values())}, not its {rows} training rows"]
    return []


def _numeric_problems(site: str, statistics: SiteStatistics) -> list[str]:
    """Counts, sums and sums of squares of the numeric columns: finite, non-negative, consistent."""
    problems = []
    for name, num in statistics.numeric.items():
        where = f"numeric column {name!r}"
        if not (math.isfinite(num.total) and math.isfinite(num.total_sq)):
            problems.append(f"site {site!r}: non-finite sum or sum of squares for {where}")
            continue
        counts = {"count": num.count, "missing": num.missing}
        problems += _counts(site, f"count and missing of {where}", counts, statistics.rows)
        if num.total_sq < 0 or (num.count == 0 and (num.total != 0 or num.total_sq != 0)):
            problems.append(f"site {site!r}: an impossible sum of squares for {where}")
        # Cauchy-Schwarz: the square of a sum is at most count times the sum of squares (a variance
        # is never negative); the tolerance covers rounding when every value is the same.
        elif num.count and (num.total / num.count) ** 2 > (num.total_sq / num.count) * (1 + 1e-9) + 1e-12:
            problems.append(f"site {site!r}: a sum and sum of squares for {where} that no values have")
    return problems


def statistics_problems(site: str, reply: PrepareReply, spec: DomainSpec, task: TaskKind) -> list[str]:
    """Why a site's aggregates (`reply.statistics`) cannot shape the shared preprocessing ([]: they can)."""
    statistics = reply.statistics
    if statistics is None:
        return [f"site {site!r}: no statistics shared, though it passed validation"]
    problems = []
    if statistics.rows < 0 or statistics.rows > reply.summary.rows:
        problems.append(
            f"site {site!r}: {statistics.rows} training rows, but it validated {reply.summary.rows} rows"
        )
    declared = ({c.name for c in spec.numeric}, {c.name for c in spec.categorical})
    if (set(statistics.numeric), set(statistics.categorical)) != declared:
        problems.append(f"site {site!r}: statistics for other columns than the domain's features")
    if task.has_classes:
        problems += _counts(site, "class counts", statistics.label_counts, statistics.rows)
    problems += _numeric_problems(site, statistics)
    for name, cat in statistics.categorical.items():
        counts = {**{f"value {value!r}": n for value, n in cat.counts.items()}, "missing": cat.missing}
        problems += _counts(site, f"counts of categorical column {name!r}", counts, statistics.rows)
    return problems


def holdout_rows(reply: PrepareReply) -> int | None:
    """The hold-out a site declared at preparation: its validated rows minus its training rows."""
    if reply.statistics is None:
        return None
    return reply.summary.rows - reply.statistics.rows


def _example_count_problem(site: str, metrics: Mapping[str, float], holdout: int | None) -> str | None:
    count = metrics.get("num_examples")
    if count is None:
        return f"site {site!r} reported no example count"
    if not math.isfinite(count) or count < 1 or count != int(count):
        return f"site {site!r} reported {count} examples"
    if holdout is not None and count > holdout:
        return f"site {site!r} reported {count:.0f} examples; it declared a hold-out of {holdout} rows"
    return None


def evaluation_problem(
    site: str, metrics: Mapping[str, float], holdout: int | None, task: TaskKind
) -> str | None:
    """Why a site's evaluation cannot count this round (None: it can).

    Its example count must be a whole number from 1 to its declared hold-out (`holdout`), and
    each of the task's metrics (and its personalised variant) infinite-free and within the range
    the task declares. NaN stays allowed: an honest site reports it for a metric its hold-out
    cannot define (ROC AUC with one class), and NaN weighs nothing in the global mean.
    """
    problem = _example_count_problem(site, metrics, holdout)
    if problem is not None:
        return problem
    ranges: Mapping[str, tuple[float, float]] = getattr(task, "metric_ranges", {})
    for name in task.metric_names:
        low, high = ranges.get(name, ANY_VALUE)
        for key in (name, f"personalised/{name}"):
            value = metrics.get(key, math.nan)
            if math.isnan(value):
                continue
            if math.isinf(value) or not low <= value <= high:
                return f"site {site!r} reported {key} = {value}, outside [{low}, {high}]"
    return None
