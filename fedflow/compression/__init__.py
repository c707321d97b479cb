"""Registry of uplink codecs: name -> factory taking keyword options (a step of the update path)."""

from collections.abc import Callable

from fedflow.compression.base import Codec
from fedflow.compression.half_precision import HalfPrecision
from fedflow.compression.identity import Identity
from fedflow.compression.stochastic_int8 import StochasticInt8
from fedflow.compression.top_k import TopK
from fedflow.plugins import CODECS_GROUP, plugins

CODECS: dict[str, Callable[..., Codec]] = {
    "none": Identity,
    "fp16": HalfPrecision,
    "int8": StochasticInt8,
    "topk": TopK,
}
CODECS.update(plugins(CODECS_GROUP, built_in=CODECS))


def build_codec(name: str, options: dict[str, float | int | str | bool] | None = None) -> Codec:
    """Instantiate a registered codec; unknown names and options fail with the valid choices."""
    if name not in CODECS:
        raise ValueError(f"unknown codec {name!r}; choose one of {sorted(CODECS)}")
    try:
        return CODECS[name](**(options or {}))
    except TypeError as error:
        raise ValueError(f"codec {name!r}: {error}") from error


__all__ = ["CODECS", "Codec", "build_codec"]
