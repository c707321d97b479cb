"""Dotted `section.key` paths into a pydantic config: which ones exist, and setting one in a dump."""

import typing
from collections.abc import MutableMapping
from typing import Any

from pydantic import BaseModel

from fedflow.errors import ConfigError


def _section(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model of a field typed `Model` or `Model | None`, if it is one."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _free_mapping(annotation: Any) -> bool:
    """True for a `dict[str, …]` field (strategy or codec options), whose keys are the variant's."""
    return typing.get_origin(annotation) is dict


def check_key(model: type[BaseModel], key: str) -> None:
    """Refuse a key that names no field of `model`, listing the valid keys where it went wrong."""
    parts = key.split(".")
    walked: list[str] = []
    current = model
    for index, part in enumerate(parts):
        fields = current.model_fields
        if part not in fields:
            valid = ", ".join(".".join([*walked, name]) for name in sorted(fields))
            where = f" in {'.'.join(walked)}" if walked else ""
            raise ConfigError(f"unknown key {key!r}; valid keys{where}: {valid}")
        walked.append(part)
        annotation = fields[part].annotation
        rest = parts[index + 1 :]
        if not rest:
            return
        section = _section(annotation)
        if section is not None:
            current = section
        elif _free_mapping(annotation) and len(rest) == 1:
            return  # one option of a strategy or codec: the variant itself checks its names
        else:
            raise ConfigError(f"unknown key {key!r}: {'.'.join(walked)} is a value, not a section")


def set_key(data: MutableMapping[str, Any], key: str, value: Any) -> None:
    """Set a dotted key in a config dump; a section that is off (None) is created to hold it."""
    *sections, last = key.split(".")
    node = data
    for part in sections:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
    node[last] = value


__all__ = ["check_key", "set_key"]
