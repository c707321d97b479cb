"""Robust aggregation rules and the coordinator's update checks, on hand-computed values."""

import numpy as np
import pytest
from site_helpers import prepared_agent

from fedflow.aggregate import clip_to_norm, coordinate_median, krum_scores, l2_norm, trimmed_mean
from fedflow.errors import PayloadError
from fedflow.messages import TrainReply
from fedflow.params import encode
from fedflow.rounds import Expected, check_update
from fedflow.strategies import build_strategy
from fedflow.update import DecodedUpdate


def _sets(*values: float) -> list[dict[str, np.ndarray]]:
    return [{"w": np.array([v], np.float32)} for v in values]


def _updates(*values: float) -> list[DecodedUpdate]:
    return [DecodedUpdate(site=f"s{i}", num_examples=10, delta=d) for i, d in enumerate(_sets(*values))]


def test_median_and_trimmed_mean_by_hand() -> None:
    assert coordinate_median(_sets(1, 2, 10))["w"][0] == 2
    assert trimmed_mean(_sets(1, 2, 3, 4, 100), trim=0.2)["w"][0] == pytest.approx(3.0)
    assert trimmed_mean(_sets(1, 2, 3, 4, 100), trim=0.0)["w"][0] == pytest.approx(22.0)


def test_krum_scores_and_selection_by_hand() -> None:
    # n = 4, f = 1: each score is the squared distance to the single nearest other update.
    scores = krum_scores(_sets(0.0, 0.1, 0.2, 5.0), byzantine=1)
    np.testing.assert_allclose(scores, [0.01, 0.01, 0.01, 4.8**2], rtol=1e-5)
    w = {"w": np.zeros(1, np.float32)}
    krum = build_strategy("krum", {"byzantine": 1})
    assert krum.aggregate(1, w, _updates(0.0, 0.1, 0.2, 5.0))["w"][0] == pytest.approx(0.0)
    multi = build_strategy("multikrum", {"byzantine": 1})  # keeps n - f = 3
    assert multi.aggregate(1, w, _updates(0.0, 0.1, 0.2, 5.0))["w"][0] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="n > f \\+ 2"):
        krum_scores(_sets(0.0, 1.0), byzantine=1)


def test_robust_rules_ignore_one_wild_update_where_fedavg_does_not() -> None:
    w = {"w": np.zeros(1, np.float32)}
    honest_and_wild = _updates(0.1, 0.12, 0.09, 0.11, 1000.0)
    assert build_strategy("fedavg").aggregate(1, w, honest_and_wild)["w"][0] > 100
    for name in ("fedmedian", "fedtrimmedmean", "multikrum"):
        moved = build_strategy(name).aggregate(1, w, honest_and_wild)["w"][0]
        assert 0.08 < moved < 0.13, name


def test_norm_helpers() -> None:
    arrays = {"a": np.array([3.0], np.float32), "b": np.array([4.0], np.float32)}
    assert l2_norm(arrays) == pytest.approx(5.0)
    clipped = clip_to_norm(arrays, 1.0)
    assert l2_norm(clipped) == pytest.approx(1.0) and clipped["a"][0] == pytest.approx(0.6)


def test_update_checks_drop_oversized_and_large_norm_updates() -> None:
    like = {"w": np.zeros(4, np.float32)}
    big = TrainReply(num_examples=3, payload=encode({"w": np.full(4, 10.0, np.float32)}))
    with pytest.raises(PayloadError, match="over the limit"):
        check_update("x", big, like, Expected(max_payload_bytes=16))
    with pytest.raises(PayloadError, match="norm 20, over the bound 5"):
        check_update("x", big, like, Expected(max_update_norm=5.0))
    assert check_update("x", big, like, Expected(max_update_norm=25.0)).site == "x"


def test_attacks_change_only_the_hostile_sites_update() -> None:
    from fedflow.attacks import AttackConfig, flip_labels, poison_delta

    delta = {"w": np.array([1.0, -2.0], np.float32)}
    np.testing.assert_allclose(poison_delta(delta, kind="sign_flip", scale=3.0, seed=0)["w"], [-3.0, 6.0])
    np.testing.assert_allclose(poison_delta(delta, kind="scaled", scale=10.0, seed=0)["w"], [10.0, -20.0])
    noise = poison_delta(delta, kind="gaussian", scale=1.0, seed=4)["w"]
    assert not np.allclose(noise, delta["w"]) and np.array_equal(
        noise, poison_delta(delta, kind="gaussian", scale=1.0, seed=4)["w"]
    )
    assert flip_labels(np.array([0.0, 1.0], np.float32), num_classes=2).tolist() == [1.0, 0.0]
    assert flip_labels(np.array([0, 1, 2]), num_classes=3).tolist() == [1, 2, 0]
    assert AttackConfig(kind="gaussian", sites=["a"]).scale == 1.0


def test_a_hostile_site_in_the_local_step(healthcare, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from fedflow.attacks import AttackConfig
    from fedflow.params import decode

    agent, request = prepared_agent(healthcare, "cleveland", tmp_path)

    def sent(attack: AttackConfig | None) -> dict[str, np.ndarray]:
        return decode(agent.train(request.model_copy(update={"attack": attack})).payload)

    honest = sent(None)
    bystander = sent(AttackConfig(kind="sign_flip", sites=["other"]))
    hostile = sent(AttackConfig(kind="sign_flip", sites=["cleveland"]))
    for name in honest:
        np.testing.assert_array_equal(bystander[name], honest[name])
        np.testing.assert_allclose(hostile[name], -honest[name])
