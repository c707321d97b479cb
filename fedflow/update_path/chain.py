"""The update path a train request asks for, assembled from its settings and the site's own."""

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedflow.compression import build_codec
from fedflow.messages import TrainRequest
from fedflow.secure_aggregation.protocol import SiteSecrets
from fedflow.strategies import build_strategy
from fedflow.tasks import TaskKind
from fedflow.update_path.base import UpdateStep, check_update_path
from fedflow.update_path.privacy import Clip, DistributedNoise
from fedflow.update_path.simulated_attack import ROW_ATTACKS, PoisonedRows, PoisonedUpdate
from fedflow.update_path.train import Train
from fedflow.update_path.wire import Compress, Encode, Mask, Sign


@dataclass(frozen=True)
class SiteKeys:
    """What the site itself holds for this round: its signing key, its secure-aggregation secrets."""

    signing: Ed25519PrivateKey | None = None
    secure_aggregation: SiteSecrets | None = None


def update_path(
    request: TrainRequest, *, site: str, task: TaskKind, num_classes: int, keys: SiteKeys
) -> list[UpdateStep]:
    """train -> (attack) -> clip -> (noise) -> compress | mask -> encode -> sign, as the request asks."""
    steps: list[UpdateStep] = []
    attack = request.attack if request.attack is not None and site in request.attack.sites else None
    if attack is not None and attack.kind in ROW_ATTACKS:
        steps.append(PoisonedRows(attack=attack, num_classes=num_classes))
    hook = build_strategy(request.strategy.name, request.strategy.options).client_hook()
    steps.append(Train(task=task, config=request.local, hook=hook, class_weights=request.class_weights))
    if attack is not None and attack.kind not in ROW_ATTACKS:
        steps.append(PoisonedUpdate(attack=attack))
    if request.privacy.mode != "off":
        steps.append(Clip(clip_norm=request.privacy.clip_norm))
        if request.privacy.mode == "distributed":
            steps.append(DistributedNoise(privacy=request.privacy, sites_in_round=request.sites_in_round))
    codec = build_codec(request.compression.codec, request.compression.options)
    if codec.name != "none":
        steps.append(Compress(codec=codec))
    if request.secure is not None:
        if keys.secure_aggregation is None:
            raise ValueError(f"site {site!r} holds no secure-aggregation keys for round {request.round}")
        steps.append(Mask(secrets=keys.secure_aggregation, plan=request.secure))
    else:
        steps.append(Encode())
    if keys.signing is not None:
        steps.append(Sign(key=keys.signing, federation_id=request.federation_id))
    check_update_path(steps)
    return steps
