"""Seeded partitioners that split one table into simulated sites, for experiments.

Real federations have one file per site; these build sites from a single public table:
`iid` (shuffled equal shares), `dirichlet` (label skew: per class, shares drawn from
Dirichlet(alpha) — Hsu et al. 2019, arXiv:1909.06335) and `natural` (by a column, e.g. store).
Each returns site name -> sorted row positions.
"""

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def iid_partition(num_rows: int, *, num_sites: int, seed: int) -> dict[str, np.ndarray]:
    """Shuffle the rows and deal them into `num_sites` near-equal shares."""
    if num_sites < 1 or num_sites > num_rows:
        raise ValueError(f"num_sites must be between 1 and the {num_rows} rows, got {num_sites}")
    order = np.random.default_rng(seed).permutation(num_rows)
    return {f"site_{i}": np.sort(part) for i, part in enumerate(np.array_split(order, num_sites))}


def dirichlet_partition(
    labels: Sequence[object] | np.ndarray,
    *,
    num_sites: int,
    alpha: float,
    seed: int,
    min_rows: int = 10,
    max_tries: int = 100,
) -> dict[str, np.ndarray]:
    """Label-skewed split: each class's rows are shared out with Dirichlet(alpha) proportions.

    Small alpha gives sites dominated by one class. Draws again (seeded) until every site has
    at least `min_rows` rows, and fails after `max_tries` with a message saying what to change.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    labels = np.asarray(labels)
    if num_sites < 1 or num_sites * min_rows > len(labels):
        raise ValueError(f"cannot give {num_sites} sites {min_rows} rows each from {len(labels)} rows")
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_sites)]
        for value in np.unique(labels):
            rows = rng.permutation(np.flatnonzero(labels == value))
            shares = rng.dirichlet(np.full(num_sites, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(int)
            for site, chunk in enumerate(np.split(rows, cuts)):
                parts[site].append(chunk)
        sites = {f"site_{i}": np.sort(np.concatenate(p)) for i, p in enumerate(parts)}
        if min(len(rows) for rows in sites.values()) >= min_rows:
            return sites
    raise ValueError(
        f"no Dirichlet(alpha={alpha}) split of {len(labels)} rows gave all {num_sites} sites "
        f"{min_rows} rows in {max_tries} draws; use fewer sites, a larger alpha or a smaller min_rows"
    )


def natural_partition(
    values: pd.Series,
    *,
    groups: Mapping[str, Sequence[object]] | None = None,
    num_groups: int | None = None,
    prefix: str | None = None,
) -> dict[str, np.ndarray]:
    """Split by a column: one site per value, per named group of values, or `num_groups` chunks.

    With `num_groups`, the sorted distinct values are cut into that many contiguous groups
    (e.g. 65 schools into 5 sites of 13 schools).
    """
    column = values.to_numpy()
    name = prefix or str(values.name)
    if groups is not None:
        out = {}
        for site, members in groups.items():
            rows = np.flatnonzero(np.isin(column.astype(str), [str(m) for m in members]))
            out[site] = rows
        return out
    distinct = sorted(pd.unique(values.dropna()), key=lambda v: (str(type(v)), v))
    if num_groups is not None:
        if not 1 <= num_groups <= len(distinct):
            raise ValueError(
                f"num_groups must be between 1 and the {len(distinct)} distinct values of {name}"
            )
        chunks = np.array_split(np.arange(len(distinct)), num_groups)
        return {
            f"{name}_group_{i}": np.flatnonzero(np.isin(column, [distinct[j] for j in chunk]))
            for i, chunk in enumerate(chunks)
        }
    return {f"{name}_{value}": np.flatnonzero(column == value) for value in distinct}
