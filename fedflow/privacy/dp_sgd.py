"""Example-level differential privacy inside a site: DP-SGD (Abadi et al., "Deep Learning with
Differential Privacy", CCS 2016) with Opacus.

Every example's gradient is clipped to `max_grad_norm` and Gaussian noise of sd
noise_multiplier * max_grad_norm is added to each batch's sum; batches are Poisson-sampled.
The site's own RDP accountant adds up every step it has taken in this federation, so the
epsilon it reports covers all its rounds. This protects each row even from the coordinator.
"""


import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from fedflow.capabilities import CHANGES_GRADIENTS, EXAMPLE_LEVEL_DP, FIXED_STEP_COUNT, Declaration, Refusal
from fedflow.config import DPSGDConfig
from fedflow.local import Training, TrainResult, make_optimizer, targets_tensor
from fedflow.privacy.accountant import PrivacyAccountant

# What DP-SGD cannot follow (fedflow.compatibility refuses these when the config is parsed).
DP_SGD = Declaration(
    capabilities=frozenset({EXAMPLE_LEVEL_DP}),
    refuses=(
        Refusal(
            CHANGES_GRADIENTS,
            "it changes the gradients after DP-SGD has clipped and noised them, which voids the guarantee",
        ),
        Refusal(
            FIXED_STEP_COUNT,
            "DP-SGD samples rows by epoch (Poisson sampling for its accountant); "
            "set local.epochs instead of local.max_steps",
        ),
    ),
)


def train_local_dp_sgd(
    model: torch.nn.Module, features: np.ndarray, labels: np.ndarray, training: Training
) -> tuple[TrainResult, float]:
    """Train `model` in place with DP-SGD (`training.config.dp_sgd`); the result and the sampling rate."""
    task, config, dp, seed = training.task, training.config, training.config.dp_sgd, training.seed
    if dp is None:
        raise ValueError("train_local_dp_sgd needs local.dp_sgd")
    class_weights = training.class_weights
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = targets_tensor(labels)
    weights = None if class_weights is None else torch.tensor(list(class_weights), dtype=torch.float32)
    loader = DataLoader(
        TensorDataset(x, y), batch_size=config.batch_size, generator=torch.Generator().manual_seed(seed)
    )
    # Imported here: Opacus adds ~50 MB and ~0.8 s to every process, and most runs never use it.
    from opacus import PrivacyEngine

    engine = PrivacyEngine(accountant="rdp")
    private_model, optimizer, private_loader = engine.make_private(
        module=model,
        optimizer=make_optimizer(model, config),
        data_loader=loader,
        noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        poisson_sampling=True,
        noise_generator=torch.Generator().manual_seed(seed + 1),
    )
    private_model.train()
    total_loss, seen, steps = 0.0, 0, 0
    for _ in range(config.epochs):
        for batch_x, batch_y in private_loader:
            if len(batch_x) == 0:  # Poisson sampling can draw an empty batch
                continue
            optimizer.zero_grad(set_to_none=True)
            loss = task.loss(private_model(batch_x), batch_y, weights)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total_loss += float(loss.detach()) * len(batch_x)
            seen += len(batch_x)
            steps += 1
    private_model.remove_hooks()
    sample_rate = 1.0 / len(private_loader)
    return TrainResult(num_examples=len(x), loss=total_loss / max(seen, 1), steps=steps), sample_rate


def site_epsilon(*, dp: DPSGDConfig, sample_rate: float, total_steps: int) -> float:
    """Epsilon of all the DP-SGD steps a site has taken (same noise and sampling rate each step)."""
    accountant = PrivacyAccountant(delta=dp.delta, history=[(dp.noise_multiplier, sample_rate)] * total_steps)
    return accountant.epsilon
