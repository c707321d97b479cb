"""Contract tests every registered strategy gets for free."""

import numpy as np
import pytest

from fedflow.params import decode, encode
from fedflow.strategies import STRATEGIES, Strategy, build_strategy
from fedflow.update import DecodedUpdate


@pytest.fixture(params=sorted(STRATEGIES))
def strategy_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _weights() -> dict[str, np.ndarray]:
    return {"w": np.array([[0.5, -1.0], [2.0, 0.0]], np.float32), "b": np.array([0.1, 0.2], np.float32)}


def _ready(name: str) -> Strategy:
    strategy = build_strategy(name)
    strategy.setup(_weights(), num_sites=5)
    return strategy


def _updates(
    strategy: Strategy, delta: dict[str, np.ndarray], sizes: tuple[int, ...] = (5, 7, 3, 4, 6)
) -> list[DecodedUpdate]:
    extras = {extra: {k: np.zeros_like(v) for k, v in delta.items()} for extra in strategy.site_extras}
    return [
        DecodedUpdate(site=f"s{i}", num_examples=n, delta=delta, extras=extras) for i, n in enumerate(sizes)
    ]


def test_zero_updates_leave_the_model_unchanged(strategy_name: str) -> None:
    strategy = _ready(strategy_name)
    zero = {k: np.zeros_like(v) for k, v in _weights().items()}
    new = strategy.aggregate(1, _weights(), _updates(strategy, zero))
    for name, value in _weights().items():
        np.testing.assert_allclose(new[name], value, atol=1e-7)
        assert new[name].dtype == value.dtype


def test_identical_updates_move_an_averaging_model_by_that_update(strategy_name: str) -> None:
    strategy = _ready(strategy_name)
    if not strategy.averaging:
        pytest.skip(f"{strategy_name} is a server optimiser, not an average")
    delta = {k: np.full_like(v, 0.25) for k, v in _weights().items()}
    new = strategy.aggregate(1, _weights(), _updates(strategy, delta))
    for name, value in _weights().items():
        np.testing.assert_allclose(new[name], value + 0.25, atol=1e-6)


def test_the_client_hook_sends_exactly_the_extras_the_server_expects(strategy_name: str) -> None:
    """Whatever a strategy asks of its sites, their replies carry the tensor sets it aggregates."""
    from fedflow.strategies.base import LocalRound, split_payload

    strategy = _ready(strategy_name)
    start = _weights()
    broadcast = split_payload(strategy.broadcast())[1]
    local = LocalRound(start=start, broadcast=broadcast, state={}, learning_rate=0.1, momentum=0.0)
    hook = strategy.client_hook()
    hook.gradient_adjustment(local)
    end = {k: v - 0.01 for k, v in start.items()}
    outcome = hook.after_training(local, end, steps=3)
    assert sorted(outcome.extras) == sorted(strategy.site_extras)
    for arrays in outcome.extras.values():
        assert {k: v.shape for k, v in arrays.items()} == {k: v.shape for k, v in start.items()}
    assert set(outcome.state) <= set(start), "a hook keeps per-parameter state only"


def test_broadcast_tensors_are_named_extras(strategy_name: str) -> None:
    for key in _ready(strategy_name).broadcast():
        assert "::" in key and key.split("::", 1)[1] in _weights()


def test_state_round_trips_through_safetensors(strategy_name: str) -> None:
    """After a step, persisting and restoring the server state gives the same next step."""
    original = _ready(strategy_name)
    delta = {k: np.full_like(v, 0.1) for k, v in _weights().items()}
    weights = original.aggregate(1, _weights(), _updates(original, delta))
    state = original.state()
    restored = build_strategy(strategy_name)
    restored.load_state(decode(encode(state)) if state else {})
    restored.setup(_weights(), num_sites=5)
    second = {k: np.full_like(v, -0.05) for k, v in _weights().items()}
    a = original.aggregate(2, weights, _updates(original, second))
    b = restored.aggregate(2, weights, _updates(restored, second))
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6)
