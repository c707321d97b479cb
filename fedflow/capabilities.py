"""What the parts of a federation declare about themselves, so that one check can refuse bad pairs.

Every variant a config can turn on (a strategy, a codec, a task kind, a privacy mode, secure
aggregation, …) declares the capabilities it provides and the capabilities of others it cannot
follow, each refusal with its reason. `fedflow.compatibility` derives every refusal from these
declarations; nothing else decides which parts go together.
"""

from dataclasses import dataclass

# The vocabulary. A new capability is a new name here, provided or refused by the variants it concerns.
READS_INDIVIDUAL_UPDATES = "reads individual updates"  # a robust rule looks at every site's delta
SENDS_SITE_EXTRAS = "sends tensors beside the delta"  # SCAFFOLD's control-variate changes
CHANGES_GRADIENTS = "changes local gradients"  # FedProx's proximal term, SCAFFOLD's correction
ADAPTIVE_STEPS = "adaptive step sizes"  # Adam: no single step size per round
DENSE_UPDATES = "dense updates"  # every value of the delta travels, at full precision
MASKS_UPDATES = "masks updates"  # secure aggregation: the coordinator sees only the sum
CLIENT_LEVEL_DP = "client-level differential privacy"  # DP-FedAvg: clipped deltas, noise on the sum
EXAMPLE_LEVEL_DP = "example-level differential privacy"  # DP-SGD: per-example clipping and noise
FIXED_STEP_COUNT = "a fixed number of local steps"  # local.max_steps instead of epochs
FLIPS_LABELS = "flips labels"  # a data-poisoning attack
FROZEN_BASE_MODEL = "a frozen base model with adapters"  # only LoRA adapters are trained and sent


@dataclass(frozen=True)
class Refusal:
    """A capability of another part that this one cannot follow, and why (said to the user)."""

    capability: str
    reason: str


@dataclass(frozen=True)
class Declaration:
    """What a part that is not a registered class (a privacy mode, an option) provides and refuses.

    Registered variants (strategies, codecs, task kinds) declare the same two names as class attributes.
    """

    capabilities: frozenset[str] = frozenset()
    refuses: tuple[Refusal, ...] = ()


__all__ = [
    "ADAPTIVE_STEPS",
    "CHANGES_GRADIENTS",
    "CLIENT_LEVEL_DP",
    "DENSE_UPDATES",
    "EXAMPLE_LEVEL_DP",
    "FIXED_STEP_COUNT",
    "FLIPS_LABELS",
    "FROZEN_BASE_MODEL",
    "MASKS_UPDATES",
    "READS_INDIVIDUAL_UPDATES",
    "SENDS_SITE_EXTRAS",
    "Declaration",
    "Refusal",
]
