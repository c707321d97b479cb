"""Client-level DP at the site (DP-FedAvg): clip the delta, and in distributed mode add noise."""

import dataclasses

from fedflow.config import PrivacyConfig
from fedflow.privacy.dp_fedavg import add_gaussian_noise, clip_delta, per_update_noise_std
from fedflow.privacy.noise_source import NoiseKey, NoiseSource, SeededNoise
from fedflow.seeding import derive_seed
from fedflow.update_path.base import SiteWork


class Clip:
    """Scale the delta down to L2 norm at most C: no site moves the mean by more than C/m."""

    name = "clip"
    provides = frozenset({"clipped"})
    needs = frozenset({"delta"})
    cannot_follow = frozenset({"compressed", "payload"})

    def __init__(self, *, clip_norm: float) -> None:
        self.clip_norm = clip_norm

    def apply(self, work: SiteWork) -> SiteWork:
        """The clipped delta."""
        return dataclasses.replace(work, delta=clip_delta(work.delta, self.clip_norm))


class DistributedNoise:
    """This site's share of the round's Gaussian noise, sd sigma * C / sqrt(m), from its secret key.

    `noise` is the site's key bound to the request (`None`: reproducible noise from the
    federation's seed, for experiments only).
    """

    name = "distributed-noise"
    provides = frozenset({"noised"})
    needs = frozenset({"clipped"})
    cannot_follow = frozenset({"compressed", "payload"})

    def __init__(self, *, privacy: PrivacyConfig, sites_in_round: int, noise: NoiseKey | None) -> None:
        self.std = per_update_noise_std(
            clip_norm=privacy.clip_norm,
            noise_multiplier=privacy.noise_multiplier,
            sites_in_round=sites_in_round,
        )
        self.noise = noise

    def _source(self, work: SiteWork) -> NoiseSource:
        if self.noise is None:
            return SeededNoise(seed=derive_seed(work.seed, "dp", work.round, work.site))
        return self.noise.source("dp", work.round, work.site)

    def apply(self, work: SiteWork) -> SiteWork:
        """The delta plus the noise."""
        return dataclasses.replace(
            work, delta=add_gaussian_noise(work.delta, std=self.std, source=self._source(work))
        )
