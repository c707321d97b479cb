"""Local training is seeded, deterministic and actually learns."""

import numpy as np
import torch

from fedflow.config import LocalTrainConfig
from fedflow.local import Training, evaluate_local, train_local
from fedflow.params import get_weights
from fedflow.tasks import get_task

BINARY = get_task("binary")


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, 0] - x[:, 1] > 0).astype(np.float32)
    return x, y


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    x, y = _data()
    config = LocalTrainConfig(epochs=2, batch_size=16, learning_rate=0.1)
    a, b, c = _model(), _model(), _model()
    train_local(a, x, y, Training(task=BINARY, config=config, seed=7))
    train_local(b, x, y, Training(task=BINARY, config=config, seed=7))
    train_local(c, x, y, Training(task=BINARY, config=config, seed=8))
    wa, wb, wc = get_weights(a), get_weights(b), get_weights(c)
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert any(not np.array_equal(wa[k], wc[k]) for k in wa)


def test_training_improves_hold_out_auc() -> None:
    x, y = _data()
    model = _model()
    before = evaluate_local(model, x[150:], y[150:], task=BINARY)
    config = LocalTrainConfig(epochs=10, learning_rate=0.1)
    train_local(model, x[:150], y[:150], Training(task=BINARY, config=config, seed=1))
    after = evaluate_local(model, x[150:], y[150:], task=BINARY)
    assert after["roc_auc"] > max(before["roc_auc"], 0.9)
    assert after["loss"] < before["loss"]
    assert after["num_examples"] == 50
