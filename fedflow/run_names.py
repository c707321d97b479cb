"""What a federation run is called and tagged with, so that runs can be told apart in MLflow and Prefect.

The name says what differs from the domain's plain run: the strategy always, then differential
privacy (its kind and ε target), secure aggregation, a codec other than none, a seed other than
the default, and the start time, e.g. `healthcare-fedprox-dp-eps3-secagg-topk-20261202-163501`.
It is also the federation id (the checkpoint folder), so it keeps to letters, digits, `-` and `_`.
"""

import re
from datetime import datetime

from fedflow.config import FederationConfig

DEFAULT_SEED = FederationConfig.model_fields["seed"].default
DEFAULT_CODEC = "none"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
# Short words for the run name; the tags spell the kind out.
_PRIVACY_WORDS = {"central": "dp", "distributed": "distdp"}


def _safe(part: str) -> str:
    """A name part with anything a checkpoint folder could not hold replaced by `-`."""
    return _UNSAFE.sub("-", part).strip("-")


def _number(value: float) -> str:
    """3.0 -> `3`, 0.5 -> `0p5`: a number as name characters."""
    return f"{value:g}".replace(".", "p").replace("+", "")


def privacy_words(config: FederationConfig) -> list[str]:
    """The run name's privacy part: `dp`/`distdp` (client-level), `dpsgd` (example-level), `eps<target>`."""
    words = []
    if config.privacy.mode != "off":
        words.append(_PRIVACY_WORDS[config.privacy.mode])
        if config.privacy.target_epsilon is not None:  # the budget applies to client-level DP only
            words.append(f"eps{_number(config.privacy.target_epsilon)}")
    if config.local.dp_sgd is not None:
        words.append("dpsgd")
    return words


def privacy_kind(config: FederationConfig) -> str:
    """Which differential privacy is on: `off`, `central`, `distributed`, `dp-sgd`, or two joined by `+`."""
    kinds: list[str] = [config.privacy.mode] if config.privacy.mode != "off" else []
    if config.local.dp_sgd is not None:
        kinds.append("dp-sgd")
    return "+".join(kinds) or "off"


def federation_name(
    domain: str, config: FederationConfig, started: datetime, given: str | None = None
) -> str:
    """The federation's id and run name: `given` as it is, else what differs and when it started."""
    if given:
        return given
    parts = [domain, config.strategy.name, *privacy_words(config)]
    if config.secure_aggregation.enabled:
        parts.append("secagg")
    if config.compression.codec != DEFAULT_CODEC:
        parts.append(config.compression.codec)
    if config.seed != DEFAULT_SEED:
        parts.append(f"seed{config.seed}")
    parts.append(f"{started:%Y%m%d-%H%M%S}")
    return "-".join(safe for safe in map(_safe, parts) if safe)


def run_tags(domain: str, config: FederationConfig, mode: str) -> dict[str, str]:
    """The tags both UIs carry: domain, strategy, privacy, secure aggregation, codec, mode."""
    tags = {
        "fedflow.domain": domain,
        "fedflow.strategy": config.strategy.name,
        "fedflow.privacy": privacy_kind(config),
        "fedflow.secure_aggregation": "on" if config.secure_aggregation.enabled else "off",
        "fedflow.codec": config.compression.codec,
        "fedflow.mode": mode,
    }
    if config.privacy.mode != "off" and config.privacy.target_epsilon is not None:
        tags["fedflow.target_epsilon"] = f"{config.privacy.target_epsilon:g}"
    return tags


def flow_run_tags(tags: dict[str, str]) -> list[str]:
    """The same tags as Prefect labels them (plain strings): `strategy:fedprox`, `mode:simulation`, …"""
    return sorted(f"{key.removeprefix('fedflow.')}:{value}" for key, value in tags.items())
