"""FedAvg and the weighted mean on hand-computed arrays."""

import numpy as np
import pytest

from fedflow.aggregate import weighted_mean
from fedflow.strategies import build_strategy
from fedflow.update import DecodedUpdate


def test_weighted_mean_by_hand() -> None:
    a = {"w": np.array([1.0, 2.0], dtype=np.float32)}
    b = {"w": np.array([4.0, 8.0], dtype=np.float32)}
    # weights 1 and 2: (1*1 + 2*4)/3 = 3, (1*2 + 2*8)/3 = 6
    out = weighted_mean([a, b], [1, 2])
    np.testing.assert_allclose(out["w"], [3.0, 6.0])
    assert out["w"].dtype == np.float32


def test_fedavg_weights_by_example_count() -> None:
    global_weights = {"w": np.array([[1.0, 1.0]], dtype=np.float32), "b": np.array([0.0], dtype=np.float32)}
    updates = [
        DecodedUpdate(
            site="a",
            num_examples=30,
            delta={"w": np.array([[3.0, 0.0]], np.float32), "b": np.array([1.0], np.float32)},
        ),
        DecodedUpdate(
            site="b",
            num_examples=10,
            delta={"w": np.array([[-1.0, 4.0]], np.float32), "b": np.array([-3.0], np.float32)},
        ),
    ]
    new = build_strategy("fedavg").aggregate(1, global_weights, updates)
    # mean delta w = 0.75*[3,0] + 0.25*[-1,4] = [2, 1]; b = 0.75*1 + 0.25*(-3) = 0
    np.testing.assert_allclose(new["w"], [[3.0, 2.0]])
    np.testing.assert_allclose(new["b"], [0.0])


def test_fedavg_uniform_weighting() -> None:
    global_weights = {"w": np.zeros(1, np.float32)}
    updates = [
        DecodedUpdate(site="a", num_examples=90, delta={"w": np.array([1.0], np.float32)}),
        DecodedUpdate(site="b", num_examples=10, delta={"w": np.array([3.0], np.float32)}),
    ]
    new = build_strategy("fedavg", {"weighting": "uniform"}).aggregate(1, global_weights, updates)
    np.testing.assert_allclose(new["w"], [2.0])


def test_weighted_mean_rejects_bad_weights() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        weighted_mean([{"w": np.zeros(1)}], [0])


def test_unknown_strategy_names_the_choices() -> None:
    with pytest.raises(ValueError, match="fedavg"):
        build_strategy("fedmagic")
