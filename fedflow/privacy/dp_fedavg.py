"""Client-level differential privacy for federated averaging: McMahan, Ramage, Talwar & Zhang,
"Learning Differentially Private Recurrent Language Models", ICLR 2018 (arXiv:1710.06963).

Every site's delta is clipped to L2 norm C, so no site moves the average by more than C/m
(m sites per round, equal weights). Gaussian noise of standard deviation sigma*C on the sum —
added by the coordinator (central) or shared out as sigma*C/sqrt(m) per site (distributed) —
makes each round a Gaussian mechanism whose privacy the RDP accountant adds up.
"""

import numpy as np

from fedflow.aggregate import clip_to_norm
from fedflow.capabilities import (
    CLIENT_LEVEL_DP,
    READS_INDIVIDUAL_UPDATES,
    SENDS_SITE_EXTRAS,
    Declaration,
    Refusal,
)
from fedflow.params import NamedArrays
from fedflow.privacy.noise_source import NoiseSource

# Noise calibrated for the mean of clipped deltas bounds only a server step that post-processes that mean.
DP_FEDAVG = Declaration(
    capabilities=frozenset({CLIENT_LEVEL_DP}),
    refuses=(
        Refusal(
            READS_INDIVIDUAL_UPDATES,
            "its rule looks at individual updates; noise calibrated for the mean does not bound it",
        ),
        Refusal(
            SENDS_SITE_EXTRAS,
            "its control variates would leave the sites without clipping or noise",
        ),
    ),
)


def per_update_noise_std(*, clip_norm: float, noise_multiplier: float, sites_in_round: int) -> float:
    """Noise per update such that the m updates' noises sum to N(0, (sigma*C)^2)."""
    return noise_multiplier * clip_norm / float(np.sqrt(sites_in_round))


def clip_delta(delta: NamedArrays, clip_norm: float) -> NamedArrays:
    """The delta scaled down to L2 norm at most C (the site's bounded contribution)."""
    return clip_to_norm(delta, clip_norm)


def add_gaussian_noise(delta: NamedArrays, *, std: float, source: NoiseSource) -> NamedArrays:
    """The delta plus independent N(0, std^2) noise on every value, drawn from `source`."""
    # Draw in name order: decoded payloads do not keep one key order, and the draws must not depend on it.
    return {
        name: (delta[name] + source.normal(std, delta[name].shape)).astype(delta[name].dtype)
        for name in sorted(delta)
    }
