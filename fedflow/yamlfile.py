"""Reading a user's YAML file into a mapping, with errors that name the file."""

from pathlib import Path
from typing import Any

import yaml

from fedflow.errors import FedflowError


def read_yaml_mapping(path: Path, *, what: str, error: type[FedflowError]) -> dict[str, Any]:
    """Parse `path` as YAML holding a mapping; raise `error` naming `what` and the file otherwise."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise error(f"{what} {path} must hold a mapping at the top level")
    return raw
