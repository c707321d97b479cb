"""A variant's options with their resolved values: the defaults its factory declares, then what was given.

Strategies and codecs take keyword options (`fedflow.strategies.build_strategy`,
`fedflow.compression.build_codec`); a config names only the ones a user changed. Logging just
those hides what ran (FedProx's `mu`), so the defaults are read from the factory's own signature:
a new variant needs no list kept elsewhere.
"""

import inspect
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

OptionValue = str | int | float | bool | None


def declared_defaults(factory: Callable[..., Any]) -> dict[str, OptionValue]:
    """The keyword options `factory` accepts, with their defaults (options without one are left out).

    Keywords a registry entry binds with `functools.partial` (FedAdam's `variant`, Krum's `keep`)
    are part of the variant's identity, not options, and are left out too.
    """
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin or C factory declares nothing we can read
        return {}
    bound = factory.keywords if isinstance(factory, partial) else {}
    return {
        name: parameter.default
        for name, parameter in signature.parameters.items()
        if parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)
        and parameter.default is not parameter.empty
        and name not in bound
    }


def resolved_options(factory: Callable[..., Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Every option the factory is called with: its declared defaults, overridden by `given`."""
    return {**declared_defaults(factory), **given}
