"""Simulated hostile sites (robustness experiments, simulation only), as steps of the update path.

A data attack changes the rows before training (or makes the site fail); a model attack
replaces the delta after it. A served site never builds these steps.
"""

import dataclasses

from fedflow.attacks import AttackConfig, SimulatedDropout, flip_labels, poison_delta
from fedflow.seeding import derive_seed
from fedflow.update_path.base import SiteWork

ROW_ATTACKS = ("dropout", "label_flip")


class PoisonedRows:
    """`dropout`: the site crashes in its step; `label_flip`: it trains on wrong labels."""

    name = "simulated-attack-on-rows"
    provides = frozenset({"poisoned-rows"})
    needs: frozenset[str] = frozenset()
    cannot_follow = frozenset({"delta"})

    def __init__(self, *, attack: AttackConfig, num_classes: int) -> None:
        self.attack = attack
        self.num_classes = num_classes

    def apply(self, work: SiteWork) -> SiteWork:
        """Fail, or flip the labels."""
        if self.attack.kind == "dropout":
            raise SimulatedDropout(f"site {work.site} drops out of round {work.round} (simulated)")
        return dataclasses.replace(work, labels=flip_labels(work.labels, num_classes=self.num_classes))


class PoisonedUpdate:
    """`gaussian`, `sign_flip` or `scaled`: what the site sends instead of its honest delta."""

    name = "simulated-attack-on-update"
    provides = frozenset({"poisoned-update"})
    needs = frozenset({"delta"})
    cannot_follow = frozenset({"clipped", "compressed", "payload"})

    def __init__(self, *, attack: AttackConfig) -> None:
        self.attack = attack

    def apply(self, work: SiteWork) -> SiteWork:
        """Replace the delta."""
        seed = derive_seed(work.seed, "attack", work.round, work.site)
        delta = poison_delta(work.delta, kind=self.attack.kind, scale=self.attack.scale, seed=seed)
        return dataclasses.replace(work, delta=delta)
