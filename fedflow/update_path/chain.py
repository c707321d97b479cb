"""The update path a train request asks for, assembled from its settings and the site's own."""

import hashlib
from dataclasses import dataclass

from fedflow.compression import build_codec
from fedflow.errors import FedflowError
from fedflow.messages import TrainRequest
from fedflow.privacy.noise_source import NoiseKey
from fedflow.secure_aggregation.protocol import SiteSecrets
from fedflow.strategies import build_strategy
from fedflow.tasks import TaskKind
from fedflow.update_path.base import UpdateStep, check_update_path
from fedflow.update_path.privacy import Clip, DistributedNoise
from fedflow.update_path.simulated_attack import ROW_ATTACKS, PoisonedRows, PoisonedUpdate
from fedflow.update_path.train import Train
from fedflow.update_path.wire import Compress, Encode, Mask

# The fields of a train request that shape the noised update (its value or the noise's scale):
# a site's noise is bound to their digest, so asking twice for one round with any of them changed
# draws fresh noise (two answers with the same noise would cancel it), while the same request
# repeated (a resumed round) draws the same noise and gives the same update.
NOISE_BINDS = (
    "federation_id",
    "round",
    "rows",
    "global_payload",
    "local",
    "strategy",
    "accepted_round",
    "class_weights",
    "privacy",
    "sites_in_round",
    "compression",
    "attack",
)
# ...and those that do not: the secure-aggregation plan holds fresh keys every time and only masks
# the noised value; the rest identify the message or the model the site approved.
NOISE_IGNORES = ("version", "kind", "secure", "model_sha256")


def noise_binding(request: TrainRequest) -> str:
    """SHA-256 of the request's fields that shape the noised update."""
    return hashlib.sha256(request.model_dump_json(include=set(NOISE_BINDS)).encode()).hexdigest()


@dataclass(frozen=True)
class SiteKeys:
    """What the site itself holds and decides for this round: its secure-aggregation secrets, its
    secret noise key, and whether it accepts reproducible noise (simulation only). The reply that
    carries the update is signed with the site's key as a whole (`fedflow.envelope`)."""

    secure_aggregation: SiteSecrets | None = None
    noise: bytes | None = None
    accepts_reproducible_noise: bool = False


def site_noise(request: TrainRequest, *, site: str, keys: SiteKeys) -> NoiseKey | None:
    """The site's noise key bound to this request; None for reproducible noise, if the site accepts it."""
    if request.privacy.reproducible_noise:
        if not keys.accepts_reproducible_noise:
            raise FedflowError(
                f"site {site!r} refuses privacy.reproducible_noise: noise drawn from the federation's seed "
                "can be removed by anyone who knows the seed (experiments only); it draws its noise from "
                "its own secret key. Turn privacy.reproducible_noise off."
            )
        return None
    if request.privacy.mode != "distributed" and request.local.dp_sgd is None:
        return None  # this update path draws no noise
    if keys.noise is None:
        raise FedflowError(f"site {site!r} holds no secret noise key for round {request.round}")
    return NoiseKey(secret=keys.noise, binding=noise_binding(request))


def update_path(
    request: TrainRequest, *, site: str, task: TaskKind, num_classes: int, keys: SiteKeys
) -> list[UpdateStep]:
    """train -> (attack) -> clip -> (noise) -> compress | mask -> encode, as the request asks."""
    steps: list[UpdateStep] = []
    attack = request.attack if request.attack is not None and site in request.attack.sites else None
    if attack is not None and attack.kind in ROW_ATTACKS:
        steps.append(PoisonedRows(attack=attack, num_classes=num_classes))
    noise = site_noise(request, site=site, keys=keys)
    hook = build_strategy(request.strategy.name, request.strategy.options).client_hook()
    steps.append(
        Train(task=task, config=request.local, hook=hook, noise=noise, class_weights=request.class_weights)
    )
    if attack is not None and attack.kind not in ROW_ATTACKS:
        steps.append(PoisonedUpdate(attack=attack))
    if request.privacy.mode != "off":
        steps.append(Clip(clip_norm=request.privacy.clip_norm))
        if request.privacy.mode == "distributed":
            steps.append(
                DistributedNoise(privacy=request.privacy, sites_in_round=request.sites_in_round, noise=noise)
            )
    codec = build_codec(request.compression.codec, request.compression.options)
    if codec.name != "none":
        steps.append(Compress(codec=codec))
    if request.secure is not None:
        if keys.secure_aggregation is None:
            raise ValueError(f"site {site!r} holds no secure-aggregation keys for round {request.round}")
        steps.append(Mask(secrets=keys.secure_aggregation, plan=request.secure))
    else:
        steps.append(Encode())
    check_update_path(steps)
    return steps
