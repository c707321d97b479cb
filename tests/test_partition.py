"""Partitioners: seeded, disjoint, covering, and as skewed as asked."""

import numpy as np
import pandas as pd
import pytest

from fedflow.partition import dirichlet_partition, iid_partition, natural_partition


def _cover(parts: dict[str, np.ndarray], n: int) -> None:
    joined = np.concatenate(list(parts.values()))
    assert sorted(joined.tolist()) == list(range(n)), "every row in exactly one site"


def test_iid_is_seeded_balanced_and_covering() -> None:
    a = iid_partition(103, num_sites=4, seed=1)
    b = iid_partition(103, num_sites=4, seed=1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert sorted(len(v) for v in a.values()) == [25, 26, 26, 26]
    _cover(a, 103)
    assert any(not np.array_equal(a[k], iid_partition(103, num_sites=4, seed=2)[k]) for k in a)


def _skew(parts: dict[str, np.ndarray], labels: np.ndarray) -> float:
    """Mean over sites of the largest class share."""
    return float(
        np.mean([np.bincount(labels[rows], minlength=2).max() / len(rows) for rows in parts.values()])
    )


def test_dirichlet_small_alpha_is_more_skewed() -> None:
    labels = np.array([0] * 600 + [1] * 400)
    skewed = [
        _skew(dirichlet_partition(labels, num_sites=5, alpha=0.1, seed=s, min_rows=5), labels)
        for s in range(5)
    ]
    even = [
        _skew(dirichlet_partition(labels, num_sites=5, alpha=100.0, seed=s, min_rows=5), labels)
        for s in range(5)
    ]
    assert np.mean(skewed) > np.mean(even) + 0.2
    assert abs(np.mean(even) - 0.6) < 0.05  # near the global mix
    parts = dirichlet_partition(labels, num_sites=5, alpha=0.5, seed=3, min_rows=50)
    _cover(parts, 1000)
    assert min(len(v) for v in parts.values()) >= 50
    again = dirichlet_partition(labels, num_sites=5, alpha=0.5, seed=3, min_rows=50)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)


def test_dirichlet_impossible_request_says_what_to_change() -> None:
    with pytest.raises(ValueError, match="cannot give"):
        dirichlet_partition(np.zeros(20), num_sites=5, alpha=0.5, seed=0, min_rows=10)


def test_natural_by_value_groups_and_chunks() -> None:
    stores = pd.Series([1, 2, 2, 7, 1, 7, 7], name="store")
    by_value = natural_partition(stores)
    assert {k: v.tolist() for k, v in by_value.items()} == {
        "store_1": [0, 4],
        "store_2": [1, 2],
        "store_7": [3, 5, 6],
    }
    grouped = natural_partition(stores, groups={"east": [1, 2], "west": [7]})
    assert grouped["east"].tolist() == [0, 1, 2, 4] and grouped["west"].tolist() == [3, 5, 6]
    chunks = natural_partition(pd.Series(range(10), name="school"), num_groups=3)
    assert [len(v) for v in chunks.values()] == [4, 3, 3]
    _cover(chunks, 10)
