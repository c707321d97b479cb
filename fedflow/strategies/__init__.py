"""Registry of aggregation strategies: name -> factory taking keyword options."""

from collections.abc import Callable
from functools import partial

from fedflow.plugins import STRATEGIES_GROUP, plugins
from fedflow.strategies.base import EXTRA_SEPARATOR, ClientHook, Strategy
from fedflow.strategies.fedavg import FedAvg
from fedflow.strategies.fedavgm import FedAvgM
from fedflow.strategies.fedopt import FedOpt
from fedflow.strategies.fedprox import FedProx
from fedflow.strategies.krum import MultiKrum
from fedflow.strategies.median import FedMedian
from fedflow.strategies.scaffold import Scaffold
from fedflow.strategies.trimmed_mean import FedTrimmedMean

STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "fedavg": FedAvg,
    "fedavgm": FedAvgM,
    "fedprox": FedProx,
    "scaffold": Scaffold,
    "fedadam": partial(FedOpt, variant="adam"),
    "fedyogi": partial(FedOpt, variant="yogi"),
    "fedadagrad": partial(FedOpt, variant="adagrad"),
    # Robust rules: they read every site's individual update (declared in their files).
    "fedmedian": FedMedian,
    "fedtrimmedmean": FedTrimmedMean,
    "krum": partial(MultiKrum, keep=1),
    "multikrum": MultiKrum,
}
STRATEGIES.update(plugins(STRATEGIES_GROUP, built_in=STRATEGIES))


def build_strategy(name: str, options: dict[str, float | int | str | bool] | None = None) -> Strategy:
    """Instantiate a registered strategy; unknown names and options fail with the valid choices."""
    key = name.lower()
    if key not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {sorted(STRATEGIES)}")
    try:
        return STRATEGIES[key](**(options or {}))
    except TypeError as error:
        raise ValueError(f"strategy {key!r} does not accept options {options}: {error}") from error


__all__ = [
    "EXTRA_SEPARATOR",
    "STRATEGIES",
    "ClientHook",
    "Strategy",
    "build_strategy",
]
