"""What a site sends back after a local step, before and after decoding."""

from dataclasses import dataclass, field

from fedflow.params import NamedArrays


@dataclass(frozen=True)
class SiteUpdate:
    """An encoded update as it crosses the site boundary: no rows, no paths, no pickles."""

    site: str
    round: int
    num_examples: int
    payload: bytes
    metrics: dict[str, float] = field(default_factory=dict)
    signature: bytes = b""


@dataclass(frozen=True)
class DecodedUpdate:
    """An update after the coordinator decoded and checked it: the weight delta as arrays."""

    site: str
    num_examples: int
    delta: NamedArrays
    metrics: dict[str, float] = field(default_factory=dict)
    extras: dict[str, NamedArrays] = field(default_factory=dict)
