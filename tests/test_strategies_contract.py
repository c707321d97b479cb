"""Contract tests every registered strategy gets for free."""

import numpy as np
import pytest

from fedflow.params import decode, encode
from fedflow.strategies import STRATEGIES, build_strategy
from fedflow.update import DecodedUpdate


@pytest.fixture(params=sorted(STRATEGIES))
def strategy_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _weights() -> dict[str, np.ndarray]:
    return {"w": np.array([[0.5, -1.0], [2.0, 0.0]], np.float32), "b": np.array([0.1, 0.2], np.float32)}


def test_zero_updates_leave_the_model_unchanged(strategy_name: str) -> None:
    strategy = build_strategy(strategy_name)
    zero = {k: np.zeros_like(v) for k, v in _weights().items()}
    updates = [DecodedUpdate(site=s, num_examples=n, delta=zero) for s, n in (("a", 5), ("b", 7))]
    new = strategy.aggregate(1, _weights(), updates)
    for name, value in _weights().items():
        np.testing.assert_allclose(new[name], value, atol=1e-7)


def test_identical_updates_move_the_model_by_that_update(strategy_name: str) -> None:
    strategy = build_strategy(strategy_name)
    delta = {k: np.full_like(v, 0.25) for k, v in _weights().items()}
    updates = [DecodedUpdate(site=s, num_examples=n, delta=delta) for s, n in (("a", 5), ("b", 7))]
    new = strategy.aggregate(1, _weights(), updates)
    for name, value in _weights().items():
        np.testing.assert_allclose(new[name], value + 0.25, atol=1e-6)


def test_configure_train_returns_scalars(strategy_name: str) -> None:
    settings = build_strategy(strategy_name).configure_train(3)
    assert all(isinstance(v, int | float | str | bool) for v in settings.values())


def test_state_round_trips_through_safetensors(strategy_name: str) -> None:
    strategy = build_strategy(strategy_name)
    state = strategy.state()
    restored = decode(encode(state)) if state else {}
    fresh = build_strategy(strategy_name)
    fresh.load_state(restored)
    assert {k: v.tolist() for k, v in fresh.state().items()} == {k: v.tolist() for k, v in state.items()}
