"""The local step a site runs, the same in simulation and cross-silo mode.

A site keeps its rows here; what it returns (statistics, updates, metrics) is what may cross
the site boundary.
"""

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fedflow.attacks import AttackConfig, SimulatedDropout, flip_labels, poison_delta
from fedflow.compression import Codec
from fedflow.config import LocalTrainConfig, PrivacyConfig, StrategyConfig
from fedflow.domain import DomainSpec
from fedflow.errors import SiteDataError
from fedflow.local import evaluate_local, predict, train_local
from fedflow.params import NamedArrays, decode, encode, get_weights, set_weights, subtract
from fedflow.privacy.audit import attack_metrics, membership_audit
from fedflow.privacy.dp_fedavg import add_gaussian_noise, clip_delta, per_update_noise_std
from fedflow.privacy.dp_sgd import site_epsilon, train_local_dp_sgd
from fedflow.privacy.lira import confidence_from_losses, lira_scores, shadow_memberships
from fedflow.secure_aggregation.masking import SecureRoundPlan, masked_payload
from fedflow.secure_aggregation.protocol import SiteSecrets
from fedflow.seeding import derive_seed
from fedflow.sitedata import SiteSplit, partition_table, read_site_frame, split_site
from fedflow.strategies import build_strategy
from fedflow.strategies.base import LocalRound, NoClientHook, join_payload, split_payload
from fedflow.tabular import Preprocessor, SiteStatistics, site_statistics
from fedflow.tasks import TaskKind, get_task
from fedflow.update import SiteUpdate

ModelFactory = Callable[..., torch.nn.Module]

# Site state a codec keeps between rounds: what error feedback has not sent yet.
UPLINK_RESIDUAL = "uplink_residual"


def read_site_data(path: Path, spec: DomainSpec, *, site: str, simulated: bool) -> pd.DataFrame:
    """A site's frame: its own file, or (simulated sites) its share of the partitioned table."""
    if not simulated:
        return read_site_frame(path, spec, site=site)
    frame, sites = _partitioned(str(path), path.stat().st_mtime_ns, spec.model_dump_json())
    if site not in sites:
        raise SiteDataError(f"site {site!r} is not one of the partition's sites {sorted(sites)[:20]}")
    return frame.iloc[sites[site]].reset_index(drop=True)


@functools.lru_cache(maxsize=4)
def _partitioned(path: str, modified_ns: int, spec_json: str) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Simulated sites share one table: read and partition it once per process (and file version)."""
    spec = DomainSpec.model_validate_json(spec_json)
    frame = read_site_frame(Path(path), spec, site="(partitioned table)")
    return frame, partition_table(frame, spec)


@dataclass
class LocalSite:
    """One site's data and settings; lives only at the site."""

    name: str
    spec: DomainSpec
    split: SiteSplit

    @property
    def task(self) -> TaskKind:
        """The domain's task kind."""
        return get_task(self.spec.task)

    @classmethod
    def from_frame(
        cls, *, name: str, spec: DomainSpec, frame: pd.DataFrame, holdout_fraction: float, seed: int
    ) -> "LocalSite":
        """Split an already read (and validated) frame, seeded per site and stratified by label."""
        task = get_task(spec.task)
        split = split_site(
            frame,
            task.labels(frame, spec) if task.has_classes else None,
            holdout_fraction=holdout_fraction,
            seed=derive_seed(seed, "split", name),
        )
        return cls(name=name, spec=spec, split=split)

    @classmethod
    def load(
        cls,
        *,
        name: str,
        spec: DomainSpec,
        path: Path,
        holdout_fraction: float,
        seed: int,
        simulated: bool = False,
    ) -> "LocalSite":
        """Read the site's data and split it."""
        frame = read_site_data(path, spec, site=name, simulated=simulated)
        return cls.from_frame(name=name, spec=spec, frame=frame, holdout_fraction=holdout_fraction, seed=seed)

    def statistics(self) -> SiteStatistics:
        """Counts and sums of the training rows (and class counts), for federated preprocessing."""
        labels = self.task.labels(self.split.train, self.spec) if self.task.has_classes else None
        return site_statistics(self.split.train, self.spec, labels)

    def arrays(self, preprocessor: Preprocessor, part: str) -> tuple[np.ndarray, np.ndarray]:
        """Features and labels of the `train` or `holdout` part."""
        frame = self.split.train if part == "train" else self.split.holdout
        return self.task.features(frame, self.spec, preprocessor), self.task.labels(frame, self.spec)


def build_global_model(
    factory: ModelFactory,
    *,
    input_dim: int,
    output_dim: int,
    options: dict[str, Any],
    weights_payload: bytes | None = None,
) -> tuple[torch.nn.Module, dict[str, NamedArrays]]:
    """Build the domain's model, load the global weights of a payload, return it and the extras."""
    model = factory(input_dim=input_dim, output_dim=output_dim, **options)
    extras: dict[str, NamedArrays] = {}
    if weights_payload is not None:
        weights, extras = split_payload(decode(weights_payload))
        set_weights(model, decode(encode(weights), like=get_weights(model)))
    return model, extras


@dataclass(frozen=True)
class LocalStepResult:
    """A local step's update (leaves the site) and the site's new private state (stays)."""

    update: SiteUpdate
    site_state: NamedArrays


def local_train_step(
    *,
    site: str,
    round_number: int,
    spec: DomainSpec,
    factory: ModelFactory,
    global_payload: bytes,
    features: np.ndarray,
    labels: np.ndarray,
    config: LocalTrainConfig,
    seed: int,
    strategy: StrategyConfig | None = None,
    site_state: NamedArrays | None = None,
    class_weights: Sequence[float] | None = None,
    attack: AttackConfig | None = None,
    privacy: PrivacyConfig | None = None,
    sites_in_round: int = 1,
    masking: tuple[SiteSecrets, SecureRoundPlan] | None = None,
    codec: Codec | None = None,
) -> LocalStepResult:
    """Train the global model on the site's rows; return the encoded delta and the site's state.

    `strategy`'s client hook changes the loop (FedProx's proximal term, SCAFFOLD's corrected
    loop with the server control from the payload and the site's own from `site_state`). `attack`
    (experiments only) makes this site misbehave as configured. With `privacy`, the delta is
    clipped to its norm bound and, in distributed mode, gets this site's share of the noise.
    With `masking` = (this round's secrets, plan) the payload is the weighted delta, masked.
    With `codec` the delta is compressed; a codec's residual (error feedback) stays in the
    site's state under `uplink_residual`.
    """
    task = get_task(spec.task)
    model, extras = build_global_model(
        factory,
        input_dim=features.shape[1],
        output_dim=task.output_dim(spec),
        options=spec.model,
        weights_payload=global_payload,
    )
    hook = build_strategy(strategy.name, strategy.options).client_hook() if strategy else NoClientHook()
    start = get_weights(model)
    local = LocalRound(
        start=start,
        broadcast=extras,
        state=dict(site_state or {}),
        learning_rate=config.learning_rate,
        momentum=config.momentum,
    )
    adjustment = hook.gradient_adjustment(local)
    private_state: NamedArrays = {}
    hostile = attack is not None and site in attack.sites
    if hostile and attack is not None and attack.kind == "dropout":
        raise SimulatedDropout(f"site {site} drops out of round {round_number} (simulated)")
    if hostile and attack is not None and attack.kind == "label_flip":
        labels = flip_labels(labels, num_classes=max(task.output_dim(spec), 2))
    train_seed = derive_seed(seed, "train", round_number, site)
    extra_metrics: dict[str, float] = {}
    if config.dp_sgd is not None:
        result, sample_rate = train_local_dp_sgd(
            model,
            features,
            labels,
            task=task,
            config=config,
            dp=config.dp_sgd,
            seed=train_seed,
            class_weights=class_weights,
        )
        # Steps taken in earlier rounds of this federation live in the site's private state.
        total_steps = int(np.asarray((site_state or {}).get("dp_sgd_steps", np.zeros(1)))[0]) + result.steps
        private_state["dp_sgd_steps"] = np.array([total_steps], dtype=np.int64)
        extra_metrics["dp_sgd_epsilon"] = site_epsilon(
            dp=config.dp_sgd, sample_rate=sample_rate, total_steps=total_steps
        )
    else:
        result = train_local(
            model,
            features,
            labels,
            task=task,
            config=config,
            seed=train_seed,
            class_weights=class_weights,
            adjustments=[adjustment] if adjustment is not None else [],
        )
    end = get_weights(model)
    delta = subtract(end, start)
    if hostile and attack is not None:
        delta = poison_delta(
            delta, kind=attack.kind, scale=attack.scale, seed=derive_seed(seed, "attack", round_number, site)
        )
    if privacy is not None and privacy.mode != "off":
        delta = clip_delta(delta, privacy.clip_norm)
        if privacy.mode == "distributed":
            std = per_update_noise_std(
                clip_norm=privacy.clip_norm,
                noise_multiplier=privacy.noise_multiplier,
                sites_in_round=sites_in_round,
            )
            delta = add_gaussian_noise(delta, std=std, seed=derive_seed(seed, "dp", round_number, site))
    sent = dict(delta)
    if codec is not None and masking is None:
        previous = (site_state or {}).get(UPLINK_RESIDUAL)
        sent, residual = codec.compress(
            delta,
            residual={} if previous is None else {"residual": previous},
            seed=derive_seed(seed, "codec", round_number, site),
        )
        if "residual" in residual:
            private_state[UPLINK_RESIDUAL] = residual["residual"]
    new_state: NamedArrays = {**(site_state or {}), **private_state}
    outcome = hook.after_training(local, end, result.steps)
    new_state = {**new_state, **outcome.state}
    if outcome.extras:
        sent = join_payload(sent, outcome.extras)
    update = SiteUpdate(
        site=site,
        round=round_number,
        num_examples=result.num_examples,
        payload=encode(sent)
        if masking is None
        else masked_payload(
            delta, site=site, num_examples=result.num_examples, secrets=masking[0], plan=masking[1]
        ),
        metrics={"train_loss": result.loss, **extra_metrics},
    )
    return LocalStepResult(update=update, site_state=new_state)


def local_audit_step(
    *,
    spec: DomainSpec,
    factory: ModelFactory,
    final_payload: bytes,
    reference_payload: bytes,
    train: tuple[np.ndarray, np.ndarray],
    holdout: tuple[np.ndarray, np.ndarray],
    shadow_models: int = 0,
    shadow_config: LocalTrainConfig | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Membership-inference audit of the final model on the site's own rows; only scores leave.

    With `shadow_models` > 0 the site also runs LiRA: that many shadow models trained from the
    reference (round-0) weights with `shadow_config`, each on a random half of its rows.
    """
    task = get_task(spec.task)

    def model_from(payload: bytes) -> torch.nn.Module:
        model, _ = build_global_model(
            factory,
            input_dim=train[0].shape[1],
            output_dim=task.output_dim(spec),
            options=spec.model,
            weights_payload=payload,
        )
        return model

    losses = {}
    for name, payload in (("final", final_payload), ("reference", reference_payload)):
        model = model_from(payload)
        losses[name] = [task.example_losses(y, predict(model, x, task)) for x, y in (train, holdout)]
    out = membership_audit(
        member_losses=losses["final"][0],
        nonmember_losses=losses["final"][1],
        member_reference_losses=losses["reference"][0],
        nonmember_reference_losses=losses["reference"][1],
    )
    if shadow_models:
        classification = task.has_classes
        features = np.concatenate([train[0], holdout[0]])
        labels = np.concatenate([train[1], holdout[1]])
        memberships = shadow_memberships(len(labels), shadow_models, derive_seed(seed, "lira"))
        stats = []
        for index, chosen in enumerate(memberships):
            shadow = model_from(reference_payload)
            train_local(
                shadow,
                features[chosen],
                labels[chosen],
                task=task,
                config=shadow_config or LocalTrainConfig(),
                seed=derive_seed(seed, "lira-shadow", index),
            )
            shadow_losses = task.example_losses(labels, predict(shadow, features, task))
            stats.append(confidence_from_losses(shadow_losses, classification=classification))
        target = confidence_from_losses(np.concatenate(losses["final"]), classification=classification)
        is_member = np.concatenate([np.ones(len(train[1])), np.zeros(len(holdout[1]))])
        out.update(attack_metrics("lira", is_member, lira_scores(target, np.stack(stats), memberships)))
    return out


def local_evaluate_step(
    *,
    spec: DomainSpec,
    factory: ModelFactory,
    global_payload: bytes,
    features: np.ndarray,
    labels: np.ndarray,
    personalization: tuple[np.ndarray, np.ndarray, LocalTrainConfig, int, int] | None = None,
) -> dict[str, float]:
    """Evaluate the global model on the site's hold-out rows; only the metrics leave.

    With `personalization` = (train features, train labels, config, steps, seed), the site also
    fine-tunes a copy for that many steps and adds `personalised/<metric>` values.
    """
    task = get_task(spec.task)
    model, _ = build_global_model(
        factory,
        input_dim=features.shape[1],
        output_dim=task.output_dim(spec),
        options=spec.model,
        weights_payload=global_payload,
    )
    metrics = evaluate_local(model, features, labels, task=task)
    if personalization is not None:
        train_x, train_y, config, steps, seed = personalization
        train_local(model, train_x, train_y, task=task, config=config, seed=seed, max_steps=steps)
        tuned = evaluate_local(model, features, labels, task=task)
        metrics.update({f"personalised/{k}": v for k, v in tuned.items() if k != "num_examples"})
    return metrics
