"""The plain PyTorch loops a site runs on its own rows: seeded and deterministic on CPU."""

from dataclasses import dataclass

import numpy as np
import torch

from fedflow.config import LocalTrainConfig
from fedflow.metrics import binary_metrics


@dataclass(frozen=True)
class TrainResult:
    """What local training reports: how many rows it saw and its mean training loss."""

    num_examples: int
    loss: float


def _optimizer(model: torch.nn.Module, config: LocalTrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        model.parameters(),
        lr=config.learning_rate,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )


def train_local(
    model: torch.nn.Module,
    features: np.ndarray,
    labels: np.ndarray,
    *,
    config: LocalTrainConfig,
    seed: int,
) -> TrainResult:
    """Train `model` in place for `config.epochs` epochs of seeded mini-batch descent."""
    if len(features) == 0:
        raise ValueError("train_local needs at least one row")
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32))
    # A private generator: sites may train concurrently in threads, so the global RNG is unsafe.
    generator = torch.Generator().manual_seed(seed)
    optimizer = _optimizer(model, config)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    total_loss, seen = 0.0, 0
    for _ in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), config.batch_size):
            batch = order[start : start + config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            logits = model(x[batch]).reshape(-1)
            loss = loss_fn(logits, y[batch])
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * len(batch)
            seen += len(batch)
    return TrainResult(num_examples=len(x), loss=total_loss / seen)


@torch.no_grad()
def predict_proba(model: torch.nn.Module, features: np.ndarray) -> np.ndarray:
    """Positive-class probabilities of a binary model."""
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    return torch.sigmoid(model(x).reshape(-1)).numpy()


def evaluate_local(model: torch.nn.Module, features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Loss, accuracy, balanced accuracy and ROC AUC of `model` on the given rows."""
    if len(features) == 0:
        raise ValueError("evaluate_local needs at least one row")
    metrics = binary_metrics(labels, predict_proba(model, features))
    metrics["num_examples"] = float(len(features))
    return metrics
