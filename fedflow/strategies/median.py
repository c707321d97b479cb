"""Coordinate-wise median: Yin, Chen, Ramchandran & Bartlett, "Byzantine-Robust Distributed
Learning: Towards Optimal Statistical Rates", ICML 2018 (arXiv:1803.01498).

The new model moves by the element-wise median of the site deltas: a minority of arbitrary
(hostile or broken) updates cannot pull any coordinate past the honest ones. Needs the
individual updates, so it cannot be combined with secure aggregation.
"""

from collections.abc import Mapping, Sequence

import numpy as np

from fedflow.aggregate import coordinate_median
from fedflow.capabilities import READS_INDIVIDUAL_UPDATES
from fedflow.params import NamedArrays, add
from fedflow.strategies.base import PlainServer
from fedflow.update import DecodedUpdate


class FedMedian(PlainServer):
    """Element-wise median of the deltas."""

    name = "fedmedian"
    capabilities = frozenset({READS_INDIVIDUAL_UPDATES})

    def aggregate(
        self, round_number: int, global_weights: Mapping[str, np.ndarray], updates: Sequence[DecodedUpdate]
    ) -> NamedArrays:
        """Global weights plus the median delta."""
        if not updates:
            raise ValueError("no updates to aggregate")
        return add(global_weights, coordinate_median([u.delta for u in updates]))
