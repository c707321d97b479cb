"""The YAML files users write: a domain's config.yaml and a sites mapping.

Read here, at the edge, and handed to the engine as typed objects (the engine reads no YAML).
"""

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from domains.config_errors import describe_config_errors
from fedflow.domain import DomainSpec
from fedflow.errors import DomainError, FedflowError, SiteDataError


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


def load_domain_spec(config_path: Path) -> DomainSpec:
    """Parse a domain's config.yaml, naming the file and the field on error."""
    raw = read_yaml_mapping(config_path, what="domain config", error=DomainError)
    try:
        return DomainSpec.model_validate(raw)
    except ValidationError as error:
        lines = describe_config_errors(config_path, error, raw)
        count = f"{len(lines)} problem{'s' if len(lines) > 1 else ''}"
        raise DomainError(f"{config_path} is invalid ({count}):\n" + "\n".join(lines)) from error


def load_site_mapping(path: Path) -> dict[str, str]:
    """Read a `site: data file` YAML mapping; relative files are taken from the YAML's folder."""
    raw: Any = read_yaml_mapping(path, what="the sites file", error=SiteDataError)
    if "sites" in raw and isinstance(raw["sites"], dict):
        raw = raw["sites"]
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise SiteDataError(f"the sites file {path} must map each site name to a data file path")
    return {str(site): str((path.parent / file).resolve()) for site, file in raw.items()}
