"""Errors the engine raises; each says what was wrong, where, and what to do."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class FedflowError(Exception):
    """Base class of every error fedflow raises on purpose."""


class PayloadError(FedflowError):
    """A payload received from another party is not a valid, expected safetensors update."""


class SiteDataError(FedflowError):
    """A site's data file is missing, unreadable, empty or not what the domain declares."""


class InsufficientSitesError(FedflowError):
    """Fewer sites than `min_sites` are left to run a federation or a round."""


class DomainError(FedflowError):
    """A domain folder or its config.yaml is missing or invalid."""


class ConfigError(FedflowError, ValueError):
    """A config, or an override of one of its keys, is invalid; the message names the key."""


def validation_messages(error: "ValidationError", prefix: str = "") -> list[str]:
    """One `key: message` line per problem pydantic found (`prefix` names the enclosing section)."""
    lines = []
    for problem in error.errors():
        key = ".".join(str(part) for part in (prefix, *problem["loc"]) if part != "")
        message = str(problem["msg"]).removeprefix("Value error, ")
        lines.append(f"{key}: {message}" if key else message)
    return lines
