"""One check of which parts of a federation go together, derived from what each part declares.

Every part a config turns on (its strategy, codec, local optimiser, privacy modes, secure
aggregation, update checks, attack and the domain's task kind) becomes a `Component`: a label
for messages, the capabilities it provides, and the capabilities of others it refuses or
requires, each with its reason. Variants declare these in their own files (fedflow.capabilities
names the vocabulary); the parts whose code lives elsewhere (secure aggregation, update checks,
the optimisers, `local.max_steps`) are declared here. `compatibility_problems` checks every pair
and words each problem "<part> cannot be combined with <other part>: <reason>".
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fedflow.attacks import ATTACKS
from fedflow.capabilities import (
    ADAPTIVE_STEPS,
    CHANGES_GRADIENTS,
    DENSE_UPDATES,
    FIXED_STEP_COUNT,
    MASKS_UPDATES,
    READS_INDIVIDUAL_UPDATES,
    SENDS_SITE_EXTRAS,
    Declaration,
    Refusal,
)
from fedflow.compression import CODECS, build_codec
from fedflow.config import FederationConfig
from fedflow.strategies import STRATEGIES, build_strategy

if TYPE_CHECKING:
    from fedflow.tasks import TaskKind

# Kinds of component whose registered variants can replace each other (and are suggested instead).
STRATEGY = "strategy"
CODEC = "compression codec"
OPTIMIZER = "local.optimizer"
ATTACK = "attack"


@dataclass(frozen=True)
class Requirement:
    """A capability that every component of one kind must provide for the holder to work, and why."""

    kind: str
    capability: str
    reason: str


@dataclass(frozen=True)
class Component:
    """One part a config turns on, as the compatibility check sees it."""

    label: str  # how messages name it: "strategy 'fedmedian'", "secure aggregation"
    kind: str
    capabilities: frozenset[str] = frozenset()
    refuses: tuple[Refusal, ...] = ()
    requires: tuple[Requirement, ...] = ()


SECURE_AGGREGATION = Component(
    label="secure aggregation",
    kind="secure_aggregation",
    capabilities=frozenset({MASKS_UPDATES}),
    refuses=(
        Refusal(
            READS_INDIVIDUAL_UPDATES,
            "a robust rule must see every site's update, and secure aggregation hides them "
            "(only their sum is revealed)",
        ),
        Refusal(SENDS_SITE_EXTRAS, "its control variates are averaged separately from the weighted deltas"),
    ),
    requires=(
        Requirement(
            CODEC,
            DENSE_UPDATES,
            "masks are added to dense fixed-point vectors, so a sparse or quantised payload would be "
            "masked back to full size",
        ),
    ),
)
UPDATE_NORM_CHECK = Component(
    label="checks.max_update_norm",
    kind="checks",
    refuses=(
        Refusal(
            MASKS_UPDATES,
            "the coordinator never sees an individual update; bound the updates at the sites with "
            "privacy.clip_norm instead",
        ),
    ),
)
MAX_STEPS = Component(label="local.max_steps", kind="local", capabilities=frozenset({FIXED_STEP_COUNT}))
# The local optimisers of LocalTrainConfig.optimizer (their code is fedflow.local.make_optimizer).
OPTIMIZERS: dict[str, Declaration] = {
    "sgd": Declaration(),
    "adam": Declaration(capabilities=frozenset({ADAPTIVE_STEPS})),
}


def _declared(label: str, kind: str, declaration: Declaration) -> Component:
    return Component(label, kind, declaration.capabilities, declaration.refuses)


def strategy_component(name: str, options: dict[str, float | int | str | bool] | None = None) -> Component:
    """A strategy: its declarations, plus what its site extras and client hook say it does."""
    strategy = build_strategy(name, options)
    derived = {SENDS_SITE_EXTRAS} if strategy.site_extras else set()
    if strategy.client_hook().changes_gradients:
        derived.add(CHANGES_GRADIENTS)
    return Component(f"strategy {name!r}", STRATEGY, strategy.capabilities | derived, tuple(strategy.refuses))


def codec_component(name: str, options: dict[str, float | int | str | bool] | None = None) -> Component:
    """An uplink codec, as it declares itself."""
    codec = build_codec(name, options)
    return Component(f"compression codec {name!r}", CODEC, codec.capabilities, tuple(codec.refuses))


def task_component(task: "TaskKind") -> Component:
    """The domain's task kind, as it declares itself."""
    return Component(f"task {task.name!r}", "task", task.capabilities, tuple(task.refuses))


# Every registered variant of a replaceable kind, by name (to suggest the ones that would be accepted).
VARIANTS: dict[str, Callable[[], dict[str, Component]]] = {
    STRATEGY: lambda: {name: strategy_component(name) for name in STRATEGIES},
    CODEC: lambda: {name: codec_component(name) for name in CODECS},
    OPTIMIZER: lambda: {n: _declared(f"{OPTIMIZER} {n!r}", OPTIMIZER, d) for n, d in OPTIMIZERS.items()},
    ATTACK: lambda: {n: _declared(f"{ATTACK} {n!r}", ATTACK, d) for n, d in ATTACKS.items()},
}


def _privacy_components(config: FederationConfig) -> list[Component]:
    parts = []
    if config.local.dp_sgd is not None:
        from fedflow.privacy.dp_sgd import DP_SGD  # imported only when on: it brings the training loop

        parts.append(_declared("local.dp_sgd", "local", DP_SGD))
    if config.privacy.mode != "off":
        from fedflow.privacy.dp_fedavg import DP_FEDAVG

        parts.append(_declared("differential privacy", "privacy", DP_FEDAVG))
    if config.secure_aggregation.enabled:
        parts.append(SECURE_AGGREGATION)
    return parts


def components(config: FederationConfig, task: "TaskKind | None" = None) -> list[Component]:
    """Every part `config` (and the domain's task kind, when known) turns on."""
    parts = [
        strategy_component(config.strategy.name, config.strategy.options),
        codec_component(config.compression.codec, config.compression.options),
        _declared(f"{OPTIMIZER} {config.local.optimizer!r}", OPTIMIZER, OPTIMIZERS[config.local.optimizer]),
    ]
    if config.local.max_steps is not None:
        parts.append(MAX_STEPS)
    parts += _privacy_components(config)
    if config.checks.max_update_norm is not None:
        parts.append(UPDATE_NORM_CHECK)
    if config.attack is not None:
        parts.append(_declared(f"{ATTACK} {config.attack.kind!r}", ATTACK, ATTACKS[config.attack.kind]))
    if task is not None:
        parts.append(task_component(task))
    return parts


def _suggestion(kind: str, accepted: Callable[[Component], bool]) -> str:
    """'; use one of [...]': the registered variants of `kind` that would be accepted."""
    if kind not in VARIANTS:
        return ""
    names = sorted(name for name, variant in VARIANTS[kind]().items() if accepted(variant))
    return f"; use one of {names}" if names else ""


def pair_problems(holder: Component, other: Component) -> list[str]:
    """Why `holder` cannot work together with `other` (empty when it can)."""
    problems = []
    refused = {r.capability for r in holder.refuses}
    for refusal in holder.refuses:
        if refusal.capability in other.capabilities:
            hint = _suggestion(other.kind, lambda variant: not refused & variant.capabilities)
            problems.append(f"{holder.label} cannot be combined with {other.label}: {refusal.reason}{hint}")
    for need in holder.requires:
        if other.kind == need.kind and need.capability not in other.capabilities:
            # Worded from the part that lacks the capability: it is the one to change.
            hint = _suggestion(other.kind, _provides(need.capability))
            problems.append(f"{other.label} cannot be combined with {holder.label}: {need.reason}{hint}")
    return problems


def _provides(capability: str) -> Callable[[Component], bool]:
    return lambda variant: capability in variant.capabilities


def compatibility_problems(config: FederationConfig, task: "TaskKind | None" = None) -> list[str]:
    """Every pair of parts of `config` (and of the domain's `task`) that cannot go together, and why."""
    parts = components(config, task)
    return [
        problem
        for holder in parts
        for other in parts
        if other is not holder
        for problem in pair_problems(holder, other)
    ]


__all__ = [
    "OPTIMIZERS",
    "SECURE_AGGREGATION",
    "UPDATE_NORM_CHECK",
    "VARIANTS",
    "Component",
    "Requirement",
    "compatibility_problems",
    "components",
    "pair_problems",
]
