"""Registry of aggregation strategies: name -> factory taking keyword options."""

from collections.abc import Callable

from fedflow.strategies.base import Strategy, TrainSettings
from fedflow.strategies.fedavg import FedAvg

STRATEGIES: dict[str, Callable[..., Strategy]] = {
    FedAvg.name: FedAvg,
}


def build_strategy(name: str, options: dict[str, float | int | str | bool] | None = None) -> Strategy:
    """Instantiate a registered strategy; unknown names and options fail with the valid choices."""
    key = name.lower()
    if key not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {sorted(STRATEGIES)}")
    try:
        return STRATEGIES[key](**(options or {}))
    except TypeError as error:
        raise ValueError(f"strategy {key!r} does not accept options {options}: {error}") from error


__all__ = ["STRATEGIES", "Strategy", "TrainSettings", "build_strategy"]
