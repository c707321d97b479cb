"""A tiny observer hook so that a caller (the CLI's progress bar) can follow a running flow."""

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RoundEvent:
    """What a listener hears after every completed round."""

    round: int
    rounds: int
    champion_metric: str = ""
    epsilon: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    participants: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)


RoundListener = Callable[[RoundEvent], None]
_LISTENERS: list[RoundListener] = []


def subscribe(listener: RoundListener) -> Callable[[], None]:
    """Register `listener`; returns a function that unregisters it."""
    _LISTENERS.append(listener)
    return lambda: _LISTENERS.remove(listener)


def publish(event: RoundEvent) -> None:
    """Tell every listener; a failing listener never breaks the federation."""
    for listener in list(_LISTENERS):
        try:
            listener(event)
        except Exception:
            continue
