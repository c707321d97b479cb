"""A domain's data contract: the checks derived from config.yaml, plus schema.py's extras.

config.yaml is the source of the baseline (columns present, types, ranges, categories, non-null
where declared, the target); schema.py only adds checks on top, so a copied schema.py can never
silently replace the columns a new config declares.
"""

from pathlib import Path
from types import ModuleType

from fedflow.domain import DomainSpec
from fedflow.errors import DomainError
from fedflow.expectations import Expectation, expectations_from_spec

# Expectation arguments that name a column of the site's file.
_COLUMN_KEYS = ("column", "column_A", "column_B")


def referenced_columns(expectation: Expectation) -> list[str]:
    """The columns an expectation reads (single, pair or list arguments)."""
    names = [str(expectation.kwargs[k]) for k in _COLUMN_KEYS if expectation.kwargs.get(k) is not None]
    return names + [str(c) for c in expectation.kwargs.get("column_list") or []]


def _extras(schema: ModuleType | None, spec: DomainSpec, schema_path: Path) -> list[Expectation]:
    if schema is None:
        return []
    extra = getattr(schema, "extra_expectations", None)
    legacy = getattr(schema, "expectations", None)
    if extra is None and legacy is None:
        return []  # a schema.py without checks of its own: the config's checks are the contract
    function = extra if extra is not None else legacy
    if not callable(function):
        raise DomainError(f"{schema_path}: extra_expectations must be a function of the domain spec")
    try:
        checks = list(function(spec))
    except Exception as error:
        raise DomainError(f"{schema_path}: building its expectations failed: {error}") from error
    bad = [c for c in checks if not isinstance(c, Expectation)]
    if bad:
        raise DomainError(
            f"{schema_path}: expectations must be fedflow.expectations.Expectation objects, "
            f"got {type(bad[0]).__name__}"
        )
    return checks


def domain_expectations(spec: DomainSpec, schema: ModuleType | None, schema_path: Path) -> list[Expectation]:
    """config.yaml's checks, then schema.py's extras (each check once), in a stable order.

    schema.py defines `extra_expectations(spec)`. An older schema.py defining `expectations(spec)`
    (the whole list, usually starting with the config's checks) still works: what it repeats
    of the config's checks is not added twice, and it can no longer drop any of them.
    """
    baseline = expectations_from_spec(spec)
    extras = [c for c in _extras(schema, spec, schema_path) if c not in baseline]
    declared = set(spec.input_columns)
    for check in extras:
        unknown = [c for c in referenced_columns(check) if c not in declared]
        if unknown:
            raise DomainError(
                f"{schema_path}: {check.type} checks column {unknown[0]!r}, which config.yaml "
                f"({schema_path.parent / 'config.yaml'}) does not declare; declare it there or remove "
                "the check from schema.py (was this schema.py copied from another template?)"
            )
    return [*baseline, *extras]
