"""Domain templates, discovered from the folders beside this file that hold a config.yaml."""

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

from fedflow.domain import DomainSpec, load_domain_spec
from fedflow.errors import DomainError
from fedflow.expectations import Expectation

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

    def is_simulated(self, site: str, overrides: dict[str, str] | None = None) -> bool:
        """True when the site's rows are cut from the partitioned table rather than read whole."""
        return self.spec.partition is not None and not (overrides and site in overrides)


def available_domains(root: Path = DOMAINS_ROOT) -> list[str]:
    """Names of the domain folders under `root` (those with a config.yaml)."""
    return sorted(p.parent.name for p in root.glob("*/config.yaml") if _IDENTIFIER.match(p.parent.name))


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


def load_domain(name: str, root: Path = DOMAINS_ROOT) -> Domain:
    """Load the domain folder `root/name`; fails loudly, naming the file, when it is broken."""
    folder = root / name
    config = folder / "config.yaml"
    if not config.is_file():
        raise DomainError(f"no domain {name!r} (looked for {config}); available: {available_domains(root)}")
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
