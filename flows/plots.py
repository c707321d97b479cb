"""Figures of a run for MLflow: global and per-site metrics over the rounds."""

import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

LEGEND_SITES = 12


def metrics_figure(
    history: Sequence[dict[str, float]], metrics: Sequence[str], sites: Sequence[str]
) -> Figure:
    """One panel per metric: the weighted global value, each site, and personalised if logged.

    `history[i]` holds round i+1's logged values (`global/<m>`, `site/<s>/<m>`, ...).
    """
    rounds = list(range(1, len(history) + 1))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=True):
        named = len(sites) <= LEGEND_SITES  # a legend of 100 clients hides the plot
        for site in sites:
            values = [h.get(f"site/{site}/{metric}", math.nan) for h in history]
            axis.plot(rounds, values, linewidth=1, alpha=0.7 if named else 0.3, label=site if named else None)
        axis.plot(
            rounds,
            [h.get(f"global/{metric}", math.nan) for h in history],
            "k-",
            linewidth=2.5,
            label="global",
        )
        personalised = [h.get(f"global/personalised/{metric}", math.nan) for h in history]
        if any(not math.isnan(v) for v in personalised):
            axis.plot(rounds, personalised, "k--", linewidth=2, label="personalised")
        axis.set_title(metric)
        axis.set_xlabel("round")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole: no 1.25, 1.5 …
        axis.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
