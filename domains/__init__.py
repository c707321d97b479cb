"""Domain templates, discovered from folders that hold a config.yaml.

Search order: the folders listed in `FEDFLOW_DOMAINS_PATH` (separated like PATH), then the
folder of this file. A new domain is a copied folder; nothing else in the project changes.
"""

import importlib.util
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

from domains.yaml_files import load_domain_spec
from fedflow.domain import DomainSpec
from fedflow.errors import DomainError
from fedflow.expectations import Expectation
from fedflow.tasks import get_task

DOMAINS_ROOT = Path(__file__).resolve().parent
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Domain:
    """A loaded domain template: its typed config, model factory and data expectations."""

    name: str
    root: Path
    spec: DomainSpec
    build_model: Callable[..., torch.nn.Module]
    expectations: list[Expectation]

    def site_path(self, site: str, overrides: dict[str, str] | None = None) -> Path:
        """The data file of `site`: an override, the config's file, or the partitioned table."""
        if overrides and site in overrides:
            return Path(overrides[site]).expanduser().resolve()
        if site not in self.spec.site_names:
            raise DomainError(f"domain {self.name!r} has no site {site!r}; sites: {self.spec.site_names}")
        if self.spec.partition is not None:
            return (self.root / self.spec.partition.source).resolve()
        return (self.root / self.spec.sites[site]).resolve()

    @property
    def class_minimum(self) -> int:
        """Minimum rows per class a site needs (0: no such check; regression never has one)."""
        return self.spec.quality.min_rows_per_class if get_task(self.spec.task).has_classes else 0

    def is_simulated(self, site: str, overrides: dict[str, str] | None = None) -> bool:
        """True when the site's rows are cut from the partitioned table rather than read whole."""
        return self.spec.partition is not None and not (overrides and site in overrides)


def domain_roots() -> list[Path]:
    """Folders searched for domains: `FEDFLOW_DOMAINS_PATH` entries first, then the shipped ones."""
    extra = [
        Path(p).expanduser().resolve()
        for p in os.environ.get("FEDFLOW_DOMAINS_PATH", "").split(os.pathsep)
        if p
    ]
    return [*extra, DOMAINS_ROOT]


def _root_of(name: str) -> Path | None:
    for root in domain_roots():
        if (root / name / "config.yaml").is_file():
            return root
    return None


def available_domains(root: Path | None = None) -> list[str]:
    """Names of the domain folders (those with a config.yaml) under `root` or every search root."""
    roots = [root] if root is not None else domain_roots()
    return sorted(
        {p.parent.name for r in roots for p in r.glob("*/config.yaml") if _IDENTIFIER.match(p.parent.name)}
    )


def _import_file(module_name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise DomainError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise DomainError(f"importing {path} failed: {error}") from error
    return module


def load_domain(name: str, root: Path | None = None) -> Domain:
    """Load the domain folder `name` (from `root` or the search roots); fails loudly when broken."""
    if not _IDENTIFIER.match(name):
        raise DomainError(f"{name!r} is not a domain name (lower-case letters, digits and _)")
    root = root or _root_of(name) or DOMAINS_ROOT
    folder = root / name
    config = folder / "config.yaml"
    if not config.is_file():
        raise DomainError(f"no domain {name!r} (looked for {config}); available: {available_domains()}")
    spec = load_domain_spec(config)
    if spec.name != name:
        raise DomainError(f"{config} declares name {spec.name!r} but lives in folder {name!r}")
    model_module = _import_file(f"fedflow_domain_{name}_model", folder / "model.py")
    schema_module = _import_file(f"fedflow_domain_{name}_schema", folder / "schema.py")
    build_model = getattr(model_module, "build_model", None)
    expectations = getattr(schema_module, "expectations", None)
    if not callable(build_model):
        raise DomainError(f"{folder / 'model.py'} must define build_model(input_dim, **options)")
    if not callable(expectations):
        raise DomainError(f"{folder / 'schema.py'} must define expectations(spec)")
    return Domain(
        name=name, root=folder, spec=spec, build_model=build_model, expectations=list(expectations(spec))
    )


def create_domain(name: str, *, template: str) -> Path:
    """Copy the domain `template` to a new domain `name` in the first search root.

    Refuses names that are not identifiers (so no path can escape the domains folder), an
    existing domain of that name, and unknown templates.
    """
    if not _IDENTIFIER.match(name):
        raise DomainError(
            f"{name!r} is not a valid domain name: use lower-case letters, digits and _, "
            "starting with a letter"
        )
    if name in available_domains():
        raise DomainError(f"a domain {name!r} already exists; choose another name or remove it first")
    source = load_domain(template).root
    destination = domain_roots()[0] / name
    if destination.exists():
        raise DomainError(f"{destination} already exists; refusing to overwrite it")
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    config = destination / "config.yaml"
    text = re.sub(r"(?m)^name:\s*\S+", f"name: {name}", config.read_text(), count=1)
    config.write_text(text)
    load_domain(name)  # the copy must load: fail now, not at the first run
    return destination
