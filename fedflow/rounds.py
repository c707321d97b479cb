"""Coordinator-side pure steps of a round: the initial model, update checks, round metrics."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fedflow.aggregate import l2_norm
from fedflow.compression import Codec
from fedflow.errors import PayloadError
from fedflow.messages import TrainReply
from fedflow.params import NamedArrays, all_finite, check_compatible, decode, get_weights
from fedflow.secure_aggregation.masking import read_masked, update_length
from fedflow.site import ModelFactory
from fedflow.strategies.base import split_payload
from fedflow.tasks import HIGHER_IS_BETTER
from fedflow.update import DecodedUpdate


def initial_weights(
    factory: ModelFactory, *, input_dim: int, output_dim: int, options: dict[str, Any], seed: int
) -> NamedArrays:
    """Round-0 global weights, seeded without disturbing the caller's global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_weights(factory(input_dim=input_dim, output_dim=output_dim, **options))


def _check_example_count(site: str, update: TrainReply, max_examples: int | None) -> None:
    if update.num_examples <= 0 or (max_examples is not None and update.num_examples > max_examples):
        raise PayloadError(
            f"site {site!r} reported {update.num_examples} examples; it declared {max_examples} "
            "training rows before the run"
        )


def check_masked_update(
    site: str,
    update: TrainReply,
    global_weights: Mapping[str, np.ndarray],
    *,
    max_payload_bytes: int,
    max_examples: int | None,
) -> np.ndarray:
    """A masked update's field vector: example count, size, name, dtype and length checked.

    Its values are masked, so their finiteness and norm cannot be checked here: secure aggregation
    relies on the sites' own clipping (privacy.clip_norm) for that.
    """
    _check_example_count(site, update, max_examples)
    try:
        return read_masked(
            update.payload, length=update_length(global_weights), max_payload_bytes=max_payload_bytes
        )
    except PayloadError as error:
        raise PayloadError(f"site {site!r}: {error}") from error


@dataclass(frozen=True)
class Expected:
    """What the coordinator expects of an update beyond the model's names, shapes and dtypes."""

    extras: Sequence[str] = ()  # the strategy's extra tensor sets, each shaped like the weights
    codec: Codec | None = None  # restores a compressed delta (its wire format is checked first)
    max_payload_bytes: int | None = None
    max_update_norm: float | None = None
    max_examples: int | None = None  # the training rows the site declared before the run


def check_update(
    site: str, update: TrainReply, global_weights: Mapping[str, np.ndarray], expected: Expected = Expected()
) -> DecodedUpdate:
    """Decode a site's update and check size, names, shapes, dtypes, finiteness, norm and count."""
    extras, codec = expected.extras, expected.codec
    max_payload_bytes, max_update_norm = expected.max_payload_bytes, expected.max_update_norm
    _check_example_count(site, update, expected.max_examples)
    if max_payload_bytes is not None and len(update.payload) > max_payload_bytes:
        raise PayloadError(
            f"site {site!r} sent {len(update.payload)} bytes, over the limit of {max_payload_bytes}"
        )
    delta, sent_extras = split_payload(decode(update.payload))
    if codec is not None:
        try:
            delta = codec.decompress(delta, like=global_weights)
        except PayloadError as error:
            raise PayloadError(f"site {site!r}: {error}") from error
    check_compatible(delta, global_weights)
    if sorted(sent_extras) != sorted(extras):
        raise PayloadError(
            f"site {site!r} sent extra tensors {sorted(sent_extras)}, expected {sorted(extras)}"
        )
    for arrays in sent_extras.values():
        check_compatible(arrays, global_weights)
    if not all(all_finite(arrays) for arrays in (delta, *sent_extras.values())):
        raise PayloadError(f"site {site!r} sent non-finite values (NaN or infinity)")
    if max_update_norm is not None and (norm := l2_norm(delta)) > max_update_norm:
        raise PayloadError(
            f"site {site!r} sent an update of norm {norm:.4g}, over the bound {max_update_norm}"
        )
    return DecodedUpdate(
        site=site,
        num_examples=update.num_examples,
        delta=delta,
        metrics=dict(update.metrics),
        extras=sent_extras,
    )


def weighted_average(values: list[float], weights: list[float]) -> float:
    """Weighted mean that skips NaN values (and their weights); NaN when nothing is left."""
    pairs = [(v, w) for v, w in zip(values, weights, strict=True) if not math.isnan(v)]
    total = sum(w for _, w in pairs)
    if not pairs or total <= 0:
        return math.nan
    return sum(v * w for v, w in pairs) / total


def worst(values: dict[str, float], metric: str) -> tuple[str, float]:
    """The site with the worst value of `metric` (ignoring NaN), and that value."""
    finite = {site: v for site, v in values.items() if not math.isnan(v)}
    if not finite:
        return "", math.nan
    pick = min if metric.removeprefix("personalised/") in HIGHER_IS_BETTER else max
    site = pick(finite, key=lambda s: finite[s])
    return site, finite[site]


# Past this many sites (simulated cross-device clients) metrics and reports summarise the sites
# (percentiles, the first ones listed) instead of listing every one.
LISTED_SITES = 100


@dataclass(frozen=True)
class RoundMetrics:
    """Federated evaluation of one global model: the weighted mean, every site, the worst site."""

    mean: dict[str, float]
    per_site: dict[str, dict[str, float]]
    worst: dict[str, tuple[str, float]]

    def flat(self) -> dict[str, float]:
        """`global/<m>`, `site/<site>/<m>` and `worst/<m>` keys, for MLflow (NaN left out)."""
        out = {f"global/{name}": value for name, value in self.mean.items()}
        for site, metrics in self.per_site.items():
            out.update({f"site/{site}/{name}": value for name, value in metrics.items()})
        out.update({f"worst/{name}": value for name, (_, value) in self.worst.items()})
        return {key: value for key, value in out.items() if not math.isnan(value)}

    def flat_summary(self) -> dict[str, float]:
        """For many sites: global and worst values plus the spread over sites (10th/50th/90th percentile)."""
        out = {f"global/{name}": value for name, value in self.mean.items()}
        out.update({f"worst/{name}": value for name, (_, value) in self.worst.items()})
        for name in self.mean:
            values = [v[name] for v in self.per_site.values() if not math.isnan(v.get(name, math.nan))]
            if values:
                for q in (10, 50, 90):
                    out[f"sites/{name}/p{q}"] = float(np.percentile(values, q))
        return {key: value for key, value in out.items() if not math.isnan(value)}


def round_metrics(per_site: Mapping[str, Mapping[str, float]], names: Sequence[str]) -> RoundMetrics:
    """Weight each site's metrics by its hold-out size; find the worst site per metric.

    A weight (`num_examples`) must be finite and non-negative: one site's infinite or NaN weight
    would decide (or erase) the global mean. The caller bounds it by the site's declared hold-out.
    """
    sites = sorted(per_site)
    weights = [float(per_site[s].get("num_examples", 1.0)) for s in sites]
    bad = [s for s, w in zip(sites, weights, strict=True) if not math.isfinite(w) or w < 0]
    if bad:
        raise ValueError(f"sites {bad} have a non-finite or negative num_examples: drop their metrics first")
    mean = {n: weighted_average([float(per_site[s].get(n, math.nan)) for s in sites], weights) for n in names}
    worst_sites = {n: worst({s: float(per_site[s].get(n, math.nan)) for s in sites}, n) for n in names}
    clean = {s: {n: float(per_site[s].get(n, math.nan)) for n in names} for s in sites}
    return RoundMetrics(mean=mean, per_site=clean, worst=worst_sites)
