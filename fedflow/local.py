"""The plain PyTorch loops a site runs on its own rows: seeded and deterministic on CPU."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fedflow.config import LocalTrainConfig
from fedflow.strategies.base import GradientAdjustment
from fedflow.tasks import TaskKind


@dataclass(frozen=True)
class TrainResult:
    """What local training reports: how many rows it saw and its mean training loss."""

    num_examples: int
    loss: float
    steps: int


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The parameters local training updates (a frozen base model's are left out)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def make_optimizer(model: torch.nn.Module, config: LocalTrainConfig) -> torch.optim.Optimizer:
    params = list(trainable_parameters(model).values())
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params,
        lr=config.learning_rate,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )


def targets_tensor(labels: np.ndarray) -> torch.Tensor:
    # A copy: labels taken from pandas may be read-only views, which torch refuses to share.
    dtype = np.int64 if np.issubdtype(labels.dtype, np.integer) else np.float32
    return torch.from_numpy(np.array(labels, dtype=dtype, copy=True))


@dataclass(frozen=True)
class Training:
    """How one local training run goes (the model and rows are given beside it)."""

    task: TaskKind
    config: LocalTrainConfig  # epochs or max_steps, batch size, optimiser
    seed: int
    class_weights: Sequence[float] | None = None
    # A strategy's client hook (FedProx's proximal term, SCAFFOLD's correction) on every gradient.
    adjustments: Sequence[GradientAdjustment] = ()


def _adjust(params: dict[str, torch.nn.Parameter], adjustments: Sequence[GradientAdjustment]) -> None:
    with torch.no_grad():
        for name, param in params.items():
            if param.grad is not None:
                for adjustment in adjustments:
                    adjustment.adjust(name, param)


def train_local(
    model: torch.nn.Module, features: np.ndarray, labels: np.ndarray, training: Training
) -> TrainResult:
    """Train `model` in place: `config.epochs` epochs (or `config.max_steps` steps) of seeded mini-batches."""
    task, config = training.task, training.config
    max_steps = config.max_steps
    if len(features) == 0:
        raise ValueError("train_local needs at least one row")
    x = task.inputs(features)
    y = targets_tensor(labels)
    class_weights = training.class_weights
    weights = None if class_weights is None else torch.tensor(list(class_weights), dtype=torch.float32)
    # A private generator: sites may train concurrently in threads, so the global RNG is unsafe.
    generator = torch.Generator().manual_seed(training.seed)
    optimizer = make_optimizer(model, config)
    params = trainable_parameters(model)
    for adjustment in training.adjustments:
        adjustment.begin(params)
    model.train()
    total_loss, seen, steps = 0.0, 0, 0
    epochs = config.epochs if max_steps is None else -(-max_steps * config.batch_size // len(x))
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), config.batch_size):
            if max_steps is not None and steps >= max_steps:
                break
            batch = order[start : start + config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = task.loss(model(x[batch]), y[batch], weights)
            loss.backward()  # type: ignore[no-untyped-call]
            if training.adjustments:
                _adjust(params, training.adjustments)
            optimizer.step()
            total_loss += float(loss.detach()) * len(batch)
            seen += len(batch)
            steps += 1
    return TrainResult(num_examples=len(x), loss=total_loss / seen, steps=steps)


@torch.no_grad()
def predict(model: torch.nn.Module, features: np.ndarray, task: TaskKind) -> np.ndarray:
    """The task's predictions for every row, in batches of `task.predict_batch_size` rows."""
    model.train(False)  # inference mode (same as Module.eval)
    step = task.predict_batch_size
    if len(features) <= step:
        return task.predict(model(task.inputs(features)))
    return np.concatenate(
        [task.predict(model(task.inputs(features[i : i + step]))) for i in range(0, len(features), step)]
    )


def evaluate_local(
    model: torch.nn.Module, features: np.ndarray, labels: np.ndarray, *, task: TaskKind
) -> dict[str, float]:
    """The task's metrics of `model` on the given rows, plus their number."""
    if len(features) == 0:
        raise ValueError("evaluate_local needs at least one row")
    metrics = task.metrics(labels, predict(model, features, task))
    metrics["num_examples"] = float(len(features))
    return metrics


def balanced_class_weights(label_counts: dict[str, int], num_classes: int) -> list[float]:
    """n / (k * n_class) per class index from federated label counts (absent classes get 1)."""
    total = sum(label_counts.values())
    return [
        total / (num_classes * label_counts[str(i)]) if label_counts.get(str(i)) else 1.0
        for i in range(num_classes)
    ]
