"""DP-FedAvg at the coordinator: enforce the clip, add the central noise, weigh sites equally."""

import dataclasses

from fedflow.config import PrivacyConfig
from fedflow.privacy.dp_fedavg import add_gaussian_noise, clip_delta, per_update_noise_std
from fedflow.privacy.noise_source import NoiseKey, NoiseSource, SeededNoise
from fedflow.seeding import derive_seed
from fedflow.update import DecodedUpdate


def central_noise_source(
    privacy: PrivacyConfig, *, key: bytes, seed: int, round_number: int, site: str
) -> NoiseSource:
    """The noise for one update: from the coordinator's secret key, or (experiments) from the seed."""
    if privacy.reproducible_noise:
        return SeededNoise(seed=derive_seed(seed, "dp-central", round_number, site))
    return NoiseKey(secret=key).source("dp-central", round_number, site)


def privatise(
    update: DecodedUpdate, privacy: PrivacyConfig, *, noise: NoiseSource, sites_in_round: int, summed: int = 0
) -> DecodedUpdate:
    """The update as DP-FedAvg aggregates it.

    Central mode: clip (a site that did not clip gains nothing) and add noise of sd
    sigma*C/sqrt(m) per update. With secure aggregation (`summed` > 0) the update is already
    the mean of `summed` clipped deltas: the sum's noise N(0, (sigma*C)^2) is added divided by
    `summed`. Either way every site weighs the same: with example weighting a large site's
    clipped delta would count for more than C/m.
    """
    delta = update.delta
    if privacy.mode == "central":
        if summed:
            std = privacy.noise_multiplier * privacy.clip_norm / summed
        else:
            delta = clip_delta(delta, privacy.clip_norm)
            std = per_update_noise_std(
                clip_norm=privacy.clip_norm,
                noise_multiplier=privacy.noise_multiplier,
                sites_in_round=sites_in_round,
            )
        delta = add_gaussian_noise(delta, std=std, source=noise)
    return dataclasses.replace(update, delta=delta, num_examples=1)
