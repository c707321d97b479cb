"""One step of every algorithm against values computed by hand."""

import numpy as np
import pytest
import torch

from fedflow.config import LocalTrainConfig
from fedflow.local import Training, train_local
from fedflow.params import get_weights, set_weights
from fedflow.strategies import build_strategy
from fedflow.strategies.fedprox import ProximalTerm
from fedflow.strategies.scaffold import CONTROL_DELTA, ControlCorrection, site_controls
from fedflow.tasks import get_task
from fedflow.update import DecodedUpdate


def _u(delta: float, n: int = 1, **extras: float) -> DecodedUpdate:
    return DecodedUpdate(
        site="s",
        num_examples=n,
        delta={"w": np.array([delta], np.float32)},
        extras={k: {"w": np.array([v], np.float32)} for k, v in extras.items()},
    )


W0 = {"w": np.array([1.0], np.float32)}


def test_fedavgm_two_rounds() -> None:
    s = build_strategy("fedavgm", {"server_lr": 0.5, "momentum": 0.9})
    s.setup(W0, num_sites=2)
    x1 = s.aggregate(1, W0, [_u(0.2, 1), _u(0.4, 3)])  # mean delta 0.35; v = 0.35; x = 1 + 0.175
    assert x1["w"][0] == pytest.approx(1.175)
    x2 = s.aggregate(2, x1, [_u(-0.1)])  # v = 0.9 * 0.35 - 0.1 = 0.215; x = 1.175 + 0.1075
    assert x2["w"][0] == pytest.approx(1.2825)


@pytest.mark.parametrize(
    ("variant", "v_after"),
    [
        ("adam", 0.99 * 1e-6 + 0.01 * 0.01),  # b2 v + (1 - b2) d^2
        ("yogi", 1e-6 + 0.01 * 0.01),  # v - (1 - b2) d^2 sign(v - d^2), and v < d^2
        ("adagrad", 1e-6 + 0.01),  # v + d^2
    ],
)
def test_fedopt_first_step(variant: str, v_after: float) -> None:
    s = build_strategy(f"fed{variant}", {"server_lr": 0.05, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3})
    s.setup(W0, num_sites=2)
    x1 = s.aggregate(1, W0, [_u(0.1)])
    m = 0.1 * 0.1  # (1 - b1) d
    assert x1["w"][0] == pytest.approx(1.0 + 0.05 * m / (np.sqrt(v_after) + 1e-3), rel=1e-5)


def test_scaffold_site_controls_option_ii() -> None:
    # c_i+ = c_i - c + (x - y) / (K lr) = 0.5 - 1 + (2 - 0) / (2 * 0.5) = 1.5; sent: 1.5 - 0.5 = 1.0
    new, delta = site_controls(
        server_control={"w": np.array([1.0])},
        site_control={"w": np.array([0.5])},
        start={"w": np.array([2.0])},
        end={"w": np.array([0.0])},
        steps=2,
        lr=0.5,
    )
    assert new["w"][0] == pytest.approx(1.5) and delta["w"][0] == pytest.approx(1.0)


def test_scaffold_server_step() -> None:
    s = build_strategy("scaffold")
    s.setup({"w": np.array([0.0], np.float32)}, num_sites=4)
    x = s.aggregate(
        1,
        {"w": np.array([0.0], np.float32)},
        [_u(1.0, **{CONTROL_DELTA: 2.0}), _u(3.0, **{CONTROL_DELTA: 4.0})],
    )
    assert x["w"][0] == pytest.approx(2.0)  # uniform mean of the deltas
    assert s.broadcast()["scaffold_c::w"][0] == pytest.approx(3.0 * 2 / 4)  # (|S|/N) mean(dc)


def _linear() -> torch.nn.Module:
    model = torch.nn.Linear(1, 1, bias=False)
    set_weights(model, {"weight": np.array([[0.0]], np.float32)})
    return model


def test_fedprox_term_and_scaffold_correction_in_the_local_loop() -> None:
    """Two full-batch SGD steps on loss = mean((w x - y)^2) with x = 1, y = 1, lr = 0.1."""
    x, y = np.ones((1, 1), np.float32), np.ones(1, np.float32)
    config = LocalTrainConfig(epochs=2, batch_size=1, learning_rate=0.1, momentum=0.0)
    task = get_task("regression")
    # Plain: grad = 2(w - 1): w1 = 0.2, w2 = 0.2 + 0.1 * 1.6 = 0.36
    plain = _linear()
    train_local(plain, x, y, Training(task=task, config=config, seed=0))
    assert get_weights(plain)["weight"][0, 0] == pytest.approx(0.36)
    # FedProx mu = 1: step 2 adds mu (w1 - w0) = 0.2 to the gradient: w2 = 0.2 + 0.1 * (1.6 - 0.2) = 0.34
    prox = _linear()
    train_local(prox, x, y, Training(task=task, config=config, seed=0, adjustments=[ProximalTerm(mu=1.0)]))
    assert get_weights(prox)["weight"][0, 0] == pytest.approx(0.34)
    # SCAFFOLD correction c - c_i = 0.5 added to both gradients: w1 = -0.1 * (-2 + 0.5) = 0.15,
    # w2 = 0.15 - 0.1 * (2 * (0.15 - 1) + 0.5) = 0.15 + 0.12 = 0.27
    corrected = _linear()
    correction = ControlCorrection({"weight": np.array([[0.5]])})
    train_local(corrected, x, y, Training(task=task, config=config, seed=0, adjustments=[correction]))
    assert get_weights(corrected)["weight"][0, 0] == pytest.approx(0.27)
