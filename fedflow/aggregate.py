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


def _stack(arrays: Sequence[Mapping[str, np.ndarray]], name: str) -> np.ndarray:
    return np.stack([a[name].astype(np.float64) for a in arrays])


def coordinate_median(arrays: Sequence[Mapping[str, np.ndarray]]) -> NamedArrays:
    """Name-wise, element-wise median over the sets of arrays."""
    return {name: np.median(_stack(arrays, name), axis=0).astype(arrays[0][name].dtype) for name in arrays[0]}


def trimmed_mean(arrays: Sequence[Mapping[str, np.ndarray]], *, trim: float) -> NamedArrays:
    """Element-wise mean after dropping the `trim` fraction of largest and of smallest values."""
    if not 0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    # At least one value is cut at each end whenever trimming is asked for and possible: with
    # four sites, floor(0.2 * 4) = 0 would silently average everything.
    cut = int(np.floor(trim * len(arrays)))
    if trim > 0 and cut == 0 and len(arrays) >= 3:
        cut = 1
    out: NamedArrays = {}
    for name in arrays[0]:
        ordered = np.sort(_stack(arrays, name), axis=0)
        kept = ordered[cut : len(arrays) - cut]
        out[name] = kept.mean(axis=0).astype(arrays[0][name].dtype)
    return out


def flatten(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """All values of a set of arrays as one float64 vector (names in sorted order)."""
    return np.concatenate([arrays[name].astype(np.float64).ravel() for name in sorted(arrays)])


def krum_scores(arrays: Sequence[Mapping[str, np.ndarray]], *, byzantine: int) -> np.ndarray:
    """Krum score of each update: the sum of squared distances to its n - f - 2 nearest others."""
    n = len(arrays)
    neighbours = n - byzantine - 2
    if neighbours < 1:
        raise ValueError(f"Krum needs n > f + 2 updates; got n={n}, f={byzantine}")
    vectors = np.stack([flatten(a) for a in arrays])
    squared = ((vectors[:, None, :] - vectors[None, :, :]) ** 2).sum(axis=2)
    scores = np.empty(n)
    for i in range(n):
        others = np.delete(squared[i], i)
        scores[i] = np.sort(others)[:neighbours].sum()
    return scores


def l2_norm(arrays: Mapping[str, np.ndarray]) -> float:
    """The L2 norm of all values together."""
    return float(np.sqrt(sum(float((a.astype(np.float64) ** 2).sum()) for a in arrays.values())))


def clip_to_norm(arrays: Mapping[str, np.ndarray], max_norm: float) -> NamedArrays:
    """Scale the arrays down so that their joint L2 norm is at most `max_norm`."""
    norm = l2_norm(arrays)
    factor = min(1.0, max_norm / norm) if norm > 0 else 1.0
    return {name: (a * factor).astype(a.dtype) for name, a in arrays.items()}
