"""Likelihood-ratio membership inference (LiRA): Carlini, Chien, Nasr, Song, Terzis & Tramèr,
"Membership Inference Attacks From First Principles", IEEE S&P 2022 (arXiv:2112.03570).

A site trains K shadow models, each on a random half of its own rows (every row is in exactly
half of them). For every row it fits a Gaussian to the shadow models' confidence on that row
when it was IN their training set and another when it was OUT; the attack score of the audited
model's confidence is the log-likelihood ratio IN vs OUT. Variances are pooled over rows (the
paper's choice when there are few shadow models). Everything runs at the site.
"""

import numpy as np


def confidence_from_losses(losses: np.ndarray, *, classification: bool) -> np.ndarray:
    """LiRA's statistic: log(p / (1 - p)) of the true class (from cross-entropy), or -loss."""
    losses = np.asarray(losses, dtype=np.float64)
    if not classification:
        return -losses
    clipped = np.clip(losses, 1e-12, 50.0)  # p = exp(-loss); keep 1 - p and p away from 0
    logit: np.ndarray = -clipped - np.log(-np.expm1(-clipped))
    return logit


def shadow_memberships(rows: int, shadows: int, seed: int) -> np.ndarray:
    """A (shadows, rows) boolean matrix: each row IN exactly half of the shadow models."""
    if shadows < 2 or shadows % 2:
        raise ValueError(f"LiRA needs an even number of shadow models (at least 2), got {shadows}")
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((shadows, rows)), axis=0)
    return order < shadows // 2


def lira_scores(target: np.ndarray, shadow_stats: np.ndarray, memberships: np.ndarray) -> np.ndarray:
    """Per row: log N(target; mu_in, s_in) - log N(target; mu_out, s_out) from the shadows."""
    stats = np.asarray(shadow_stats, dtype=np.float64)
    inside = np.where(memberships, stats, np.nan)
    outside = np.where(memberships, np.nan, stats)
    mu_in, mu_out = np.nanmean(inside, axis=0), np.nanmean(outside, axis=0)
    s_in = max(float(np.nanstd(inside - mu_in)), 1e-6)
    s_out = max(float(np.nanstd(outside - mu_out)), 1e-6)

    def log_density(x: np.ndarray, mu: np.ndarray, sd: float) -> np.ndarray:
        density: np.ndarray = -0.5 * ((x - mu) / sd) ** 2 - np.log(sd)
        return density

    result: np.ndarray = log_density(target, mu_in, s_in) - log_density(target, mu_out, s_out)
    return result
