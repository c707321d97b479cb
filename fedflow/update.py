"""A site's update after the coordinator decoded and checked it."""

from dataclasses import dataclass, field

from fedflow.params import NamedArrays


@dataclass(frozen=True)
class DecodedUpdate:
    """An update after the coordinator decoded and checked it: the weight delta as arrays."""

    site: str
    num_examples: int
    delta: NamedArrays
    metrics: dict[str, float] = field(default_factory=dict)
    extras: dict[str, NamedArrays] = field(default_factory=dict)
