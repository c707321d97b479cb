"""Variants from other packages: strategies, codecs and task kinds declared as entry points.

A package that adds, say, a strategy declares it in its own metadata:

    [project.entry-points."fedflow.strategies"]
    fedavgclip = "my_package.fedavgclip:FedAvgClip"

and fedflow's registry finds it when it is installed, beside the built-in variants and with
the same contract tests (they are parametrised over the registries). A name that clashes with
a built-in variant, or an entry point that cannot be imported, fails loudly, naming it.
"""

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from fedflow.errors import FedflowError

STRATEGIES_GROUP = "fedflow.strategies"
CODECS_GROUP = "fedflow.codecs"
TASKS_GROUP = "fedflow.tasks"


class PluginError(FedflowError):
    """An installed fedflow plugin cannot be loaded or clashes with a built-in variant."""


def plugins(group: str, *, built_in: Mapping[str, object]) -> dict[str, Any]:
    """Name -> loaded object of every entry point of `group` installed in this environment."""
    out: dict[str, Any] = {}
    for entry in entry_points(group=group):
        if entry.name in built_in:
            raise PluginError(
                f"entry point {entry.name!r} of {group} ({entry.value}) has the name of a built-in variant"
            )
        try:
            out[entry.name] = entry.load()
        except Exception as error:
            raise PluginError(
                f"entry point {entry.name!r} of {group} ({entry.value}) cannot be loaded: {error}"
            ) from error
    return out
