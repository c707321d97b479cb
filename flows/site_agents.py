"""The site agents of this process: built from each site's own settings, once, and reused.

In simulation every site of the federation has an agent in the coordinator's process (or on a
Dask worker), reading only its own file; a served site's process has the one agent it serves.
Agents are keyed by everything that decides their settings, so a run with another sites file,
state folder or key folder never meets an agent built for an earlier one.
"""

import functools
import threading
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from domains import Domain, load_domain
from domains.yaml_files import load_site_mapping
from fedflow.checkpoint import state_root
from fedflow.errors import FedflowError
from fedflow.signing import keys_root
from fedflow.site_agent import SiteAgent, SiteData, SiteSettings
from fedflow.site_policy import SitePolicy, model_sha256
from fedflow.validation_summary import ValidationSummary
from flows.served_site import ServedSite
from validation import validate_frame


class SiteLocation(BaseModel):
    """Where a simulated site's settings come from in this process (resolved by the coordinator)."""

    sites_file: str | None = None  # YAML mapping site -> data file (replaces the domain's)
    state_dir: str
    keys_dir: str

    @classmethod
    def here(cls, sites_file: str | None, keys_dir: str | None = None) -> "SiteLocation":
        """This process's folders: FEDFLOW_STATE_DIR, and `keys_dir` (the federation's key folder,
        which in simulation holds the sites' keys too) or FEDFLOW_KEYS_DIR, or their defaults."""
        keys = Path(keys_dir).resolve() if keys_dir else keys_root()
        return cls(sites_file=sites_file, state_dir=str(state_root()), keys_dir=str(keys))


@functools.cache
def domain_named(name: str) -> Domain:
    """Load a domain once per process: agents are built many times."""
    return load_domain(name)


class DomainValidator:
    """The domain's Great Expectations suite, run on a site's frame."""

    def __init__(self, domain: Domain) -> None:
        self.domain = domain

    def __call__(self, frame: pd.DataFrame, *, site: str) -> ValidationSummary:
        """The privacy-safe summary of the checks."""
        return validate_frame(frame, self.domain.expectations, site=site, suite_name=self.domain.name)


def _site_data(domain: Domain, site: str, sites_file: str | None) -> SiteData:
    try:
        overrides = load_site_mapping(Path(sites_file)) if sites_file else None
        path = domain.site_path(site, overrides)
        return SiteData(path=path, simulated=domain.is_simulated(site, overrides))
    except FedflowError as error:
        return SiteData(problem=str(error))


_AGENTS: dict[tuple[str, str, str], SiteAgent] = {}
_LOCK = threading.Lock()


def simulated_agent(domain_name: str, site: str, location: SiteLocation) -> SiteAgent:
    """The agent of a simulated site (one per domain, site and location in this process)."""
    key = (domain_name, site, location.model_dump_json())
    with _LOCK:
        agent = _AGENTS.get(key)
        if agent is None:
            domain = domain_named(domain_name)
            settings = SiteSettings(
                name=site,
                spec=domain.spec,
                build_model=domain.build_model,
                data=_site_data(domain, site, location.sites_file),
                validator=DomainValidator(domain),
                state_dir=Path(location.state_dir),
                keys_dir=Path(location.keys_dir),
                # Simulated sites are one organisation's experiment: they follow the federation's split.
                policy=SitePolicy.simulation(),
                model_sha256=model_sha256(domain.root / "model.py"),
            )
            agent = _AGENTS[key] = SiteAgent(settings)
    return agent


@functools.cache
def served_agent() -> SiteAgent:
    """The agent of the site this process serves (`fedflow site serve`), from the site's own settings."""
    served = ServedSite.from_environment()
    if served is None or served.domain is None:
        raise FedflowError("this process serves no site (start it with `fedflow site serve`)")
    domain = domain_named(served.domain)
    data = SiteData(path=Path(served.data)) if served.data else SiteData(problem="the site has no data path")
    settings = SiteSettings(
        name=served.site,
        spec=domain.spec,
        build_model=domain.build_model,
        data=data,
        validator=DomainValidator(domain),
        state_dir=Path(served.state_dir) if served.state_dir else state_root(),
        keys_dir=Path(served.keys_dir) if served.keys_dir else keys_root(),
        accepts_simulated_attacks=False,
        accepts_reproducible_noise=False,
        policy=load_site_policy(Path(served.policy)) if served.policy else SitePolicy(),
        model_sha256=model_sha256(domain.root / "model.py"),
    )
    return SiteAgent(settings)


def load_site_policy(path: Path) -> SitePolicy:
    """A site's policy file (YAML), checked: an unknown key or a bad value names itself."""
    from pydantic import ValidationError

    from domains.yaml_files import read_yaml_mapping
    from fedflow.errors import validation_messages

    try:
        return SitePolicy.model_validate(read_yaml_mapping(path, what="site policy", error=FedflowError))
    except ValidationError as error:
        raise FedflowError(f"site policy {path}: " + "; ".join(validation_messages(error))) from error
