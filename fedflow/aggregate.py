"""Pure aggregation functions over named arrays."""

from collections.abc import Mapping, Sequence

import numpy as np

from fedflow.params import NamedArrays
from fedflow.update import DecodedUpdate


def weighted_mean(arrays: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]) -> NamedArrays:
    """Name-wise mean of `arrays` weighted by `weights` (which need not sum to one)."""
    if not arrays:
        raise ValueError("weighted_mean needs at least one set of arrays")
    if len(arrays) != len(weights):
        raise ValueError(f"{len(arrays)} sets of arrays but {len(weights)} weights")
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise ValueError(f"weights must be non-negative with a positive sum, got {list(weights)}")
    names = arrays[0].keys()
    out: NamedArrays = {}
    for name in names:
        # Accumulate in float64 so that many small updates do not lose precision.
        acc = np.zeros(arrays[0][name].shape, dtype=np.float64)
        for array, weight in zip(arrays, weights, strict=True):
            acc += array[name].astype(np.float64) * (weight / total)
        out[name] = acc.astype(arrays[0][name].dtype)
    return out


def mean_delta(updates: Sequence[DecodedUpdate], *, weighting: str = "examples") -> NamedArrays:
    """The sites' mean delta, weighted by example count (`examples`) or equally (`uniform`)."""
    if not updates:
        raise ValueError("no updates to aggregate")
    if weighting not in ("examples", "uniform"):
        raise ValueError(f"weighting must be 'examples' or 'uniform', got {weighting!r}")
    weights = [1.0 if weighting == "uniform" else float(u.num_examples) for u in updates]
    return weighted_mean([u.delta for u in updates], weights)


def mean_extra(updates: Sequence[DecodedUpdate], extra: str) -> NamedArrays:
    """The unweighted mean over sites of one extra tensor set (e.g. SCAFFOLD's control deltas)."""
    return weighted_mean([u.extras[extra] for u in updates], [1.0] * len(updates))
