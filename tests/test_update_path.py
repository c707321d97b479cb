"""The update path: small steps in a checked order, assembled from a train request."""

from pathlib import Path

import numpy as np
import pytest
from site_helpers import prepared_agent

from domains import Domain
from fedflow.compression import build_codec
from fedflow.config import CompressionConfig, LocalTrainConfig, PrivacyConfig
from fedflow.errors import FedflowError
from fedflow.privacy.noise_source import NoiseKey, new_noise_key
from fedflow.secure_aggregation.masking import SecureRoundPlan, round_context
from fedflow.secure_aggregation.protocol import SiteSecrets
from fedflow.strategies.base import NoClientHook
from fedflow.tasks import get_task
from fedflow.update_path import UpdatePathError, check_update_path
from fedflow.update_path.chain import SiteKeys, update_path
from fedflow.update_path.privacy import Clip, DistributedNoise
from fedflow.update_path.train import Train
from fedflow.update_path.wire import Compress, Encode, Mask


def _plan(secrets: SiteSecrets) -> SecureRoundPlan:
    return SecureRoundPlan(
        roster={"cleveland": secrets.public()},
        members=("cleveland",),
        threshold=1,
        context=round_context("unit-test", 1),
        fraction_bits=24,
        weighted_by_examples=True,
    )


def test_steps_in_a_wrong_order_are_refused_before_anything_runs() -> None:
    secrets = SiteSecrets.generate()
    noise = DistributedNoise(
        privacy=PrivacyConfig(mode="distributed"), sites_in_round=2, noise=NoiseKey(secret=new_noise_key())
    )
    codec = build_codec("topk", {"fraction": 0.1})
    train = Train(task=get_task("binary"), config=LocalTrainConfig(), hook=NoClientHook(), noise=None)
    with pytest.raises(UpdatePathError, match="'distributed-noise' needs \\['clipped'\\]"):
        check_update_path([train, noise])
    with pytest.raises(UpdatePathError, match="'mask' cannot follow a step that provides \\['compressed'\\]"):
        check_update_path([train, Compress(codec=codec), Mask(secrets=secrets, plan=_plan(secrets))])
    with pytest.raises(UpdatePathError, match="'clip' cannot follow"):
        check_update_path([train, Encode(), Clip(clip_norm=1.0)])
    with pytest.raises(UpdatePathError, match="'encode' needs \\['delta'\\]"):
        check_update_path([Encode()])
    check_update_path([train, Clip(clip_norm=1.0), noise, Compress(codec=codec), Encode()])


def test_a_codec_under_secure_aggregation_is_refused_not_skipped(healthcare: Domain, tmp_path: Path) -> None:
    # The config refuses this combination when parsed; a request built by hand is refused too.
    secrets = SiteSecrets.generate()
    _, request = prepared_agent(healthcare, "cleveland", tmp_path)
    request = request.model_construct(
        **{**dict(request), "secure": _plan(secrets), "compression": CompressionConfig(codec="int8")}
    )
    keys = SiteKeys(secure_aggregation=secrets)
    with pytest.raises(UpdatePathError, match="cannot follow"):
        update_path(request, site="cleveland", task=get_task("binary"), num_classes=2, keys=keys)


def test_the_chain_a_request_asks_for(healthcare: Domain, tmp_path: Path) -> None:
    _, request = prepared_agent(healthcare, "cleveland", tmp_path)
    task = get_task("binary")
    private = request.model_copy(
        update={
            "privacy": PrivacyConfig(mode="distributed"),
            "compression": CompressionConfig(codec="topk", options={"fraction": 0.1}),
        }
    )
    keys = SiteKeys(noise=new_noise_key())
    names = [s.name for s in update_path(private, site="cleveland", task=task, num_classes=2, keys=keys)]
    # No signing step: the reply that carries the update is signed as a whole (tests/test_authentication.py).
    assert names == ["train", "clip", "distributed-noise", "compress", "encode"]
    plain = [
        s.name for s in update_path(request, site="cleveland", task=task, num_classes=2, keys=SiteKeys())
    ]
    assert plain == ["train", "encode"]


def test_a_served_site_refuses_simulated_attacks(healthcare: Domain, tmp_path: Path) -> None:
    import dataclasses

    from fedflow.attacks import AttackConfig
    from fedflow.site_agent import SiteAgent

    agent, request = prepared_agent(healthcare, "cleveland", tmp_path)
    served = SiteAgent(dataclasses.replace(agent.settings, accepts_simulated_attacks=False))
    attack = AttackConfig(kind="scaled", sites=["cleveland"], scale=10.0)
    with pytest.raises(FedflowError, match="simulation only"):
        served.train(request.model_copy(update={"attack": attack}))
    assert np.isfinite(served.train(request).num_examples)
