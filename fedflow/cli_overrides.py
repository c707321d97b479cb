"""The command line's config overrides: which `fedflow run` flag sets which key, and `-c key=value`.

This module only turns text into `{dotted key: value}`; every rule about what the values mean
(and what goes together) lives in `FederationConfig.with_overrides` and the config itself.
"""

import re
from collections.abc import Mapping
from typing import Any

import yaml

from fedflow.errors import ConfigError

# `fedflow run` flags (typer's parameter names) -> the config key each sets. README documents the flags.
RUN_FLAGS: dict[str, str] = {
    "rounds": "rounds",
    "seed": "seed",
    "sites_fraction": "sites_fraction",
    "min_sites": "min_sites",
    "min_sites_per_round": "min_sites_per_round",
    "personalization_steps": "personalization_steps",
    "audit": "audit",
    "audit_shadows": "audit_shadow_models",
    "strategy": "strategy.name",
    "local_epochs": "local.epochs",
    "local_steps": "local.max_steps",
    "batch_size": "local.batch_size",
    "learning_rate": "local.learning_rate",
    "optimizer": "local.optimizer",
    "dp_sgd_noise": "local.dp_sgd.noise_multiplier",
    "dp_sgd_clip": "local.dp_sgd.max_grad_norm",
    "dp": "privacy.mode",
    "clip_norm": "privacy.clip_norm",
    "noise_multiplier": "privacy.noise_multiplier",
    "target_epsilon": "privacy.target_epsilon",
    "codec": "compression.codec",
    "secure_aggregation": "secure_aggregation.enabled",
    "max_dropouts": "secure_aggregation.max_dropouts",
}
# Repeatable KEY=VALUE flags -> (the flag as typed, the section their keys go into; "" = the config).
RUN_PAIR_FLAGS: dict[str, tuple[str, str]] = {
    "strategy_option": ("--strategy-option", "strategy.options"),
    "codec_option": ("--codec-option", "compression.options"),
    "config": ("--config", ""),
}


class _CoreScalars(yaml.SafeLoader):
    """YAML 1.2 core scalars: `off`, `yes` and `no` stay text (privacy.mode off), `1e-3` is a number."""


_CORE_RESOLVERS = {
    "tag:yaml.org,2002:bool": (r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    "tag:yaml.org,2002:int": (r"^[-+]?[0-9]+$", "-+0123456789"),
    "tag:yaml.org,2002:float": (
        r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$",
        "-+0123456789.",
    ),
}
_CoreScalars.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _CORE_RESOLVERS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, (_pattern, _first) in _CORE_RESOLVERS.items():
    _CoreScalars.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


def _core_number(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | float:
    text = str(loader.construct_scalar(node))
    if node.tag.endswith(":int"):
        return int(text)  # decimal: YAML 1.1 would read 010 as octal 8
    return float(text.lower().replace(".inf", "inf").replace(".nan", "nan"))


_CoreScalars.add_constructor("tag:yaml.org,2002:int", _core_number)
_CoreScalars.add_constructor("tag:yaml.org,2002:float", _core_number)


def parse_value(text: str) -> Any:
    """A value as YAML reads it: numbers, true/false, null, 'quoted text', [lists]; else the text."""
    try:
        return yaml.load(text, Loader=_CoreScalars)  # SafeLoader's subclass: builds plain values only
    except yaml.YAMLError as error:
        raise ConfigError(f"cannot read {text!r} as a value: {error}") from error


def parse_pair(pair: str, flag: str) -> tuple[str, Any]:
    """`key=value` -> (key, parsed value); anything else is refused naming the flag."""
    key, sep, text = pair.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{flag} expects KEY=VALUE, got {pair!r}")
    return key.strip(), parse_value(text.strip())


def run_overrides(params: Mapping[str, Any]) -> dict[str, Any]:
    """The dotted config keys `fedflow run`'s flags set (flags left unset set nothing)."""
    overrides = {key: params[name] for name, key in RUN_FLAGS.items() if params.get(name) is not None}
    for name, (flag, section) in RUN_PAIR_FLAGS.items():
        for pair in params.get(name) or []:
            key, value = parse_pair(pair, flag)
            overrides[f"{section}.{key}" if section else key] = value
    return overrides


__all__ = ["RUN_FLAGS", "RUN_PAIR_FLAGS", "parse_pair", "parse_value", "run_overrides"]
