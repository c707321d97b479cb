"""Example-level differential privacy inside a site: DP-SGD (Abadi et al., "Deep Learning with
Differential Privacy", CCS 2016) with Opacus.

Every example's gradient is clipped to `max_grad_norm` and Gaussian noise of sd
noise_multiplier * max_grad_norm is added to each batch's sum; batches are Poisson-sampled.
The site's own RDP accountant adds up every step it has taken in this federation, so the
epsilon it reports covers all its rounds.

Where the randomness comes from (`DPSGDSeeds`): the noise and the Poisson sampling each use a
torch generator seeded with 64 bits derived from the site's secret noise key, the round and the
request (`fedflow.privacy.noise_source`), and the optimiser runs in Opacus's secure mode (every
noise value the sum of four draws divided by 2, against floating-point attacks).

What this guarantees: nobody without the site's key (the coordinator, other sites, readers of
MLflow) can regenerate or predict the noise or the sampled batches, so the (epsilon, delta) the
site reports holds against them as long as the key stays on the site; a round repeated with the
same request repeats exactly (resume). What it does not: Opacus's full secure mode also draws
from a cryptographically secure generator (`torchcsprng`), which has no release for current
torch (its last, 0.2.1 of March 2021, targets torch 1.8), so `PrivacyEngine(secure_mode=True)`
refuses to start. Here torch's Mersenne Twister expands the secret seed: its output is
unpredictable without the seed, but it is not a cryptographic generator (its state can in
principle be reconstructed from 624 consecutive exact outputs, which never leave the site), and
the seed has 64 bits, not 256. `privacy.reproducible_noise` instead seeds both from the
federation's seed as before: anyone who knows the seed knows the noise (experiments only).
"""

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from fedflow.capabilities import CHANGES_GRADIENTS, EXAMPLE_LEVEL_DP, FIXED_STEP_COUNT, Declaration, Refusal
from fedflow.config import DPSGDConfig, LocalTrainConfig
from fedflow.local import Training, TrainResult, make_optimizer, targets_tensor
from fedflow.privacy.accountant import PrivacyAccountant

if TYPE_CHECKING:
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

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


@dataclass(frozen=True)
class DPSGDSeeds:
    """Seeds of DP-SGD's noise and Poisson sampling, derived from the site's secret key."""

    noise: int
    sampling: int


Loader = DataLoader[tuple[torch.Tensor, ...]]


def _make_private(
    model: torch.nn.Module, loader: Loader, config: LocalTrainConfig, secret: DPSGDSeeds | None, seed: int
) -> tuple["GradSampleModule", "DPOptimizer", Loader]:
    """Opacus's model, optimiser and Poisson-sampled loader, with secret or (experiments) seeded noise."""
    # Imported here: Opacus adds ~50 MB and ~0.8 s to every process, and most runs never use it.
    from opacus import PrivacyEngine

    dp = config.dp_sgd
    assert dp is not None
    noise_seed = seed + 1 if secret is None else secret.noise
    # PrivacyEngine(secure_mode=True) needs torchcsprng; the optimiser's own switch below is the
    # secure-mode noise (four draws per value) from our generator.
    with warnings.catch_warnings():
        if secret is not None:  # its advice is to switch on the secure-mode noise, done below
            warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant="rdp")
    private_model, optimizer, private_loader = engine.make_private(
        module=model,
        optimizer=make_optimizer(model, config),
        data_loader=loader,
        noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        poisson_sampling=True,  # the sampler draws from the loader's generator
        noise_generator=torch.Generator().manual_seed(noise_seed),
    )
    if secret is not None:
        optimizer.secure_mode = True
    return private_model, optimizer, private_loader


def train_local_dp_sgd(
    model: torch.nn.Module,
    features: np.ndarray,
    labels: np.ndarray,
    training: Training,
    secret: DPSGDSeeds | None,
) -> tuple[TrainResult, float]:
    """Train `model` in place with DP-SGD (`training.config.dp_sgd`); the result and the sampling rate.

    `secret`: seeds from the site's key; `None` seeds noise and sampling from `training.seed`
    (reproducible noise, experiments only).
    """
    task, config, seed = training.task, training.config, training.seed
    if config.dp_sgd is None:
        raise ValueError("train_local_dp_sgd needs local.dp_sgd")
    class_weights = training.class_weights
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = targets_tensor(labels)
    weights = None if class_weights is None else torch.tensor(list(class_weights), dtype=torch.float32)
    sampling_seed = seed if secret is None else secret.sampling
    loader = DataLoader(
        TensorDataset(x, y),
        batch_size=config.batch_size,
        generator=torch.Generator().manual_seed(sampling_seed),
    )
    private_model, optimizer, private_loader = _make_private(model, loader, config, secret, seed)
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
