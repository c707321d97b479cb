"""Which sites take part in a round."""

import math
from collections.abc import Sequence

import numpy as np


def sample_sites(sites: Sequence[str], *, fraction: float, minimum: int, seed: int) -> list[str]:
    """Seeded sample of max(ceil(fraction * n), minimum) sites (all of them if fewer exist)."""
    count = min(len(sites), max(math.ceil(fraction * len(sites)), minimum))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(sites), size=count, replace=False)
    return [sites[i] for i in sorted(chosen)]
