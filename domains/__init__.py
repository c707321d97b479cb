"""Domain templates, discovered from folders that hold a config.yaml.

Search order: the folders listed in `FEDFLOW_DOMAINS_PATH` (separated like PATH), then the
folder of this file. A new domain is a copied folder; nothing else in the project changes.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from domains.contract import domain_expectations
from domains.yaml_files import load_domain_spec
from fedflow.domain import DomainSpec
from fedflow.errors import DomainError
from fedflow.expectations import Expectation
from fedflow.tasks import get_task

if TYPE_CHECKING:
    import torch

DOMAINS_ROOT = Path(__file__).resolve().parent
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Domain:
    """A loaded domain template: its typed config, model factory and data expectations."""

    name: str
    root: Path
    spec: DomainSpec
    expectations: list[Expectation]

    @cached_property
    def build_model(self) -> Callable[..., torch.nn.Module]:
        """model.py's `build_model`, imported on first use (checking a file needs no torch)."""
        path = self.root / "model.py"
        build_model = getattr(_import_file(f"fedflow_domain_{self.name}_model", path), "build_model", None)
        if not callable(build_model):
            raise DomainError(f"{path} must define build_model(input_dim, **options)")
        return build_model

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


def load_domain(name: str, root: Path | None = None, *, with_model: bool = True) -> Domain:
    """Load the domain folder `name` (from `root` or the search roots); fails loudly when broken.

    `with_model=False` leaves model.py (and so torch) unimported until `build_model` is first
    used: what checking a site's file against the contract needs.
    """
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
    schema_path = folder / "schema.py"
    schema_module = (
        _import_file(f"fedflow_domain_{name}_schema", schema_path) if schema_path.is_file() else None
    )
    expectations = domain_expectations(spec, schema_module, schema_path)
    domain = Domain(name=name, root=folder, spec=spec, expectations=expectations)
    if with_model:
        domain.build_model  # noqa: B018  (import model.py now: a broken one fails at load, not mid-run)
    return domain


def create_domain(name: str, *, template: str, infer: Path | None = None, target: str | None = None) -> Path:
    """Copy the domain `template`'s code and config (not its data) to a new domain `name`.

    With `infer`, config.yaml is drafted from that file (its columns, ranges, categories and task,
    `target` naming the label) and the file becomes the first site. Refuses names that are not
    identifiers (so no path can escape the domains folder), an existing domain, unknown templates.
    """
    from domains.new_domain import NOT_COPIED, inferred_config, placeholder_config

    if not _IDENTIFIER.match(name):
        raise DomainError(
            f"{name!r} is not a valid domain name: use lower-case letters, digits and _, "
            "starting with a letter"
        )
    if name in available_domains():
        raise DomainError(f"a domain {name!r} already exists; choose another name or remove it first")
    if (infer is None) != (target is None):
        raise DomainError("--infer FILE and --target COLUMN go together: give both or neither")
    source = load_domain(template)
    if infer is not None and get_task(source.spec.task).reads_text_folders:
        raise DomainError(f"--infer drafts tabular domains; {template!r} is a text template")
    destination = domain_roots()[0] / name
    if destination.exists():
        raise DomainError(f"{destination} already exists; refusing to overwrite it")
    shutil.copytree(source.root, destination, ignore=shutil.ignore_patterns(*NOT_COPIED))
    config = destination / "config.yaml"
    try:
        config.write_text(placeholder_config(config.read_text(), name=name, template=template))
        if infer is not None and target is not None:
            inferred_config(config, name=name, source=infer.expanduser().resolve(), target=target)
        load_domain(name)  # the copy must load: fail now, not at the first run
    except DomainError:
        shutil.rmtree(destination)  # nothing half-made is left behind to block a retry
        raise
    return destination
