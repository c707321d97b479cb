"""A config.yaml's validation errors, one readable line per field.

Each line names the file, the key (with the column's name where there is one), what was found,
what is expected and, where one helps, a hint.
"""

import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from fedflow.domain import DomainSpec

_HINTS = {
    "extra_forbidden": "unknown key: check its spelling or remove it",
    "missing": "add this key",
    "float_parsing": "write a plain number, e.g. 0 or 1.5 (no units, no thousands separators)",
    "float_type": "write a plain number, e.g. 0 or 1.5",
    "int_parsing": "write a whole number, e.g. 20",
    "list_type": "write a list, e.g. [a, b] or one `- item` per line",
    "dict_type": "write a mapping of `key: value` lines",
    "string_type": 'write text; quote it if YAML could read it otherwise, e.g. "No" or "007"',
    "too_short": "give at least one value",
}


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the last key of `loc` (to list the keys it accepts)."""
    model: Any = DomainSpec
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) else None
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    """`X`, `X | None` or `list[X]` -> X."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (list, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


def _key(loc: tuple[int | str, ...], raw: Any) -> str:
    """`categorical[2] (sex).categories[0]`: the column's name follows its index."""
    out, node = "", raw
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        node = _child(node, part)
        if isinstance(part, int) and isinstance(node, dict) and "name" in node:
            out += f" ({node['name']})"
    return out or "(whole file)"


def _child(node: Any, part: int | str) -> Any:
    if isinstance(part, int):
        return node[part] if isinstance(node, list) and part < len(node) else None
    return node.get(part) if isinstance(node, dict) else None


def _found(error: Any) -> str:
    if error["type"] == "missing":
        return "nothing"
    value = repr(error.get("input"))
    return value if len(value) <= 60 else value[:57] + "..."


def _line(path: Path, error: Any, raw: Any) -> str:
    loc = tuple(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Input should be ")
    hint = _HINTS.get(error["type"], "")
    if error["type"] == "extra_forbidden":
        model = _model_at(loc)
        if model is not None:
            hint += f"; allowed here: {', '.join(model.model_fields)}"
    if error["type"] == "extra_forbidden":
        return f"{path}: {_key(loc, raw)}: found an unknown key (value {_found(error)}) (hint: {hint})"
    if error["type"] in ("value_error", "assertion_error") or "found" in message:
        return f"{path}: {_key(loc, raw)}: {message}"
    text = f"{path}: {_key(loc, raw)}: found {_found(error)}; expected {message}"
    return f"{text} (hint: {hint})" if hint else text


def describe_config_errors(path: Path, error: ValidationError, raw: Any) -> list[str]:
    """One line per invalid field of the config at `path` (whose parsed YAML is `raw`)."""
    return [_line(path, e, raw) for e in error.errors()]
