"""Framework-neutral definition of the Flower-vs-fedflow benchmark workload.

Plain Python: depends only on numpy, torch and scikit-learn (no flwr, no fedflow),
so that both sides of the side-by-side benchmark import *this* module and get
bit-identical data, partition, initial model and local training.

Workload (see /work/shared/ANCHORS.md, "Flower simulation"):

* data: scikit-learn ``load_breast_cancer`` (569 rows, 30 features, 2 classes);
* split: ``train_test_split(test_size=0.2, stratify=y, random_state=seed)``
  -> 455 training rows, 114 test rows;
* features standardised with mean/std of the *training* rows
  (``StandardScaler().fit(X_train)``), cast to float32;
* partition: training rows spread over K clients by a per-class
  Dirichlet(alpha=0.5) draw from ``numpy.random.default_rng(seed)`` (see
  :func:`dirichlet_partition` for the exact draw order and the fix-up that gives
  every client at least one row);
* model: MLP 30 -> 64 -> 2 (ReLU); ``torch.manual_seed(seed)`` immediately
  before building the initial global model (:func:`initial_model`);
* local training: 1 epoch, mini-batches of 32 (last partial batch kept), SGD
  lr 0.05, no momentum, no weight decay, mean cross-entropy; mini-batch order
  from ``torch.randperm`` with a ``torch.Generator`` seeded by
  :func:`shuffle_seed` (seed, round, client id);
* aggregation: FedAvg weighted by the number of training rows of each client,
  all K clients every round;
* reported: accuracy of the final global model on the 20 % test split.

:func:`reference_fedavg` runs the whole thing in one process with no framework;
a framework run with the same (K, R, seed) should land on the same accuracy
(parameters agree up to float32 summation order of the weighted average).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

ALPHA = 0.5
TEST_SIZE = 0.2
LR = 0.05
BATCH_SIZE = 32
LOCAL_EPOCHS = 1
N_FEATURES = 30
HIDDEN = 64
N_CLASSES = 2


@dataclass(frozen=True)
class SplitData:
    """Standardised float32 features and int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@functools.lru_cache(maxsize=8)
def load_split(seed: int) -> SplitData:
    """Stratified 80/20 split (random_state=seed), standardised on training rows."""
    x, y = load_breast_cancer(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_SIZE, stratify=y, random_state=seed)
    scaler = StandardScaler().fit(x_tr)
    return SplitData(
        x_train=scaler.transform(x_tr).astype(np.float32),
        y_train=np.asarray(y_tr, dtype=np.int64),
        x_test=scaler.transform(x_te).astype(np.float32),
        y_test=np.asarray(y_te, dtype=np.int64),
    )


def dirichlet_partition(
    labels: np.ndarray, num_clients: int, seed: int, alpha: float = ALPHA
) -> tuple[list[np.ndarray], int]:
    """Per-class Dirichlet partition of row indices ``0..len(labels)-1``.

    Exact procedure (one ``rng = numpy.random.default_rng(seed)``):

    1. for each class ``c`` in ascending order: ``idx = flatnonzero(labels == c)``;
       ``rng.shuffle(idx)``; ``p = rng.dirichlet([alpha] * K)``;
       cut points ``(cumsum(p)[:-1] * len(idx)).astype(int)``; the j-th piece goes
       to client j;
    2. fix-up (deterministic, no extra randomness): while some client is empty,
       take the lowest-numbered empty client, and move to it the *last* index of
       the currently largest client (ties: lowest client number);
    3. each client's index array is sorted ascending.

    Returns ``(parts, n_fixups)`` where ``n_fixups`` is how many rows were moved.
    """
    if num_clients < 1:
        raise ValueError("num_clients must be >= 1")
    if num_clients > len(labels):
        raise ValueError("more clients than training rows")
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(num_clients)]
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        p = rng.dirichlet([alpha] * num_clients)
        cuts = (np.cumsum(p)[:-1] * len(idx)).astype(int)
        for j, piece in enumerate(np.split(idx, cuts)):
            parts[j].extend(int(i) for i in piece)
    n_fixups = 0
    while True:
        empty = [j for j, rows in enumerate(parts) if not rows]
        if not empty:
            break
        sizes = [len(rows) for rows in parts]
        donor = int(np.argmax(sizes))  # argmax returns the first (lowest id) on ties
        parts[empty[0]].append(parts[donor].pop())
        n_fixups += 1
    return [np.array(sorted(rows), dtype=np.int64) for rows in parts], n_fixups


@functools.lru_cache(maxsize=8)
def client_partition(num_clients: int, seed: int) -> tuple[tuple[np.ndarray, ...], int]:
    """Cached partition of the training rows of ``load_split(seed)``."""
    data = load_split(seed)
    parts, n_fixups = dirichlet_partition(data.y_train, num_clients, seed)
    return tuple(parts), n_fixups


def client_data(partition_id: int, num_clients: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training rows (x, y) of client ``partition_id`` (0-based)."""
    data = load_split(seed)
    parts, _ = client_partition(num_clients, seed)
    rows = parts[partition_id]
    return data.x_train[rows], data.y_train[rows]


class MLP(nn.Module):
    """30 -> 64 -> 2, ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(N_FEATURES, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def initial_model(seed: int) -> MLP:
    """The initial global model: ``torch.manual_seed(seed)`` then ``MLP()``."""
    torch.manual_seed(seed)
    return MLP()


def get_weights(model: nn.Module) -> list[np.ndarray]:
    """Parameters as float32 numpy arrays, in ``state_dict`` order
    (fc1.weight, fc1.bias, fc2.weight, fc2.bias)."""
    return [v.detach().cpu().numpy().copy() for v in model.state_dict().values()]


def set_weights(model: nn.Module, weights: list[np.ndarray]) -> None:
    keys = list(model.state_dict().keys())
    model.load_state_dict(
        OrderedDict((k, torch.from_numpy(np.asarray(w))) for k, w in zip(keys, weights, strict=True)),
        strict=True,
    )


def shuffle_seed(seed: int, server_round: int, partition_id: int) -> int:
    """Seed of the mini-batch order of one client in one round (round is 1-based)."""
    return seed * 1_000_003 + server_round * 10_007 + partition_id


def local_train(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    server_round: int,
    partition_id: int,
    epochs: int = LOCAL_EPOCHS,
    lr: float = LR,
    batch_size: int = BATCH_SIZE,
) -> float:
    """Train in place; returns the mean training loss over all mini-batches."""
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y)
    gen = torch.Generator().manual_seed(shuffle_seed(seed, server_round, partition_id))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.0)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    total, n_batches = 0.0, 0
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), batch_size):
            b = order[start : start + batch_size]
            opt.zero_grad()
            loss = loss_fn(model(xt[b]), yt[b])
            loss.backward()
            opt.step()
            total += float(loss.item())
            n_batches += 1
    return total / max(n_batches, 1)


@torch.no_grad()
def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on (x, y)."""
    model.eval()
    logits = model(torch.from_numpy(x))
    yt = torch.from_numpy(y)
    loss = float(nn.functional.cross_entropy(logits, yt).item())
    acc = float((logits.argmax(dim=1) == yt).float().mean().item())
    return loss, acc


def fedavg(weights: list[list[np.ndarray]], num_examples: list[int]) -> list[np.ndarray]:
    """Example-weighted average, computed like Flower 1.42's
    ``aggregate_arrayrecords`` (float32 arrays times python-float factors, summed
    in the given order)."""
    total = float(sum(num_examples))
    out: list[np.ndarray] | None = None
    for ws, n in zip(weights, num_examples, strict=True):
        f = n / total
        if out is None:
            out = [w * f for w in ws]
        else:
            for i, w in enumerate(ws):
                out[i] += w * f
    assert out is not None
    return [np.asarray(w) for w in out]


def reference_fedavg(num_clients: int, num_rounds: int, seed: int) -> float:
    """Framework-free run of the whole workload; returns final test accuracy."""
    data = load_split(seed)
    global_w = get_weights(initial_model(seed))
    model = MLP()
    for rnd in range(1, num_rounds + 1):
        updates, sizes = [], []
        for pid in range(num_clients):
            x, y = client_data(pid, num_clients, seed)
            set_weights(model, global_w)
            local_train(model, x, y, seed, rnd, pid)
            updates.append(get_weights(model))
            sizes.append(len(y))
        global_w = fedavg(updates, sizes)
    set_weights(model, global_w)
    return evaluate(model, data.x_test, data.y_test)[1]


if __name__ == "__main__":  # tiny self-check: python workload.py [K] [R] [seed]
    import sys

    defaults = [10, 3, 0]
    given = [int(a) for a in sys.argv[1:4]]
    k, r, s = given + defaults[len(given) :]
    parts, fix = client_partition(k, s)
    print("client sizes:", [len(p) for p in parts], "fixups:", fix)
    print("reference accuracy:", reference_fedavg(k, r, s))
