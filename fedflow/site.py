"""A site's rows and the local work on them that is not the update path: evaluation and audit.

A site keeps its rows here; what it returns (statistics, metrics, attack scores) is what may
cross the site boundary. Training goes through `fedflow.update_path`.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fedflow.domain import DomainSpec
from fedflow.errors import SiteDataError
from fedflow.params import NamedArrays, decode, encode, get_weights, set_weights
from fedflow.seeding import derive_seed
from fedflow.sitedata import SiteSplit, partition_table, read_site_frame, split_site
from fedflow.strategies.base import split_payload
from fedflow.tabular import Preprocessor, SiteStatistics, site_statistics
from fedflow.tasks import TaskKind, get_task

ModelFactory = Callable[..., torch.nn.Module]


def read_site_data(path: Path, spec: DomainSpec, *, site: str, simulated: bool) -> pd.DataFrame:
    """A site's frame: its own file, or (simulated sites) its share of the partitioned table."""
    if not simulated:
        return read_site_frame(path, spec, site=site)
    frame, sites = _partitioned(str(path), path.stat().st_mtime_ns, spec.model_dump_json())
    if site not in sites:
        raise SiteDataError(f"site {site!r} is not one of the partition's sites {sorted(sites)[:20]}")
    return frame.iloc[sites[site]].reset_index(drop=True)


@functools.lru_cache(maxsize=4)
def _partitioned(path: str, modified_ns: int, spec_json: str) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Simulated sites share one table: read and partition it once per process (and file version)."""
    spec = DomainSpec.model_validate_json(spec_json)
    frame = read_site_frame(Path(path), spec, site="(partitioned table)")
    return frame, partition_table(frame, spec)


@dataclass
class LocalSite:
    """One site's data and settings; lives only at the site."""

    name: str
    spec: DomainSpec
    split: SiteSplit

    @property
    def task(self) -> TaskKind:
        """The domain's task kind."""
        return get_task(self.spec.task)

    @classmethod
    def from_frame(
        cls, *, name: str, spec: DomainSpec, frame: pd.DataFrame, holdout_fraction: float, seed: int
    ) -> "LocalSite":
        """Split an already read (and validated) frame, seeded per site and stratified by label."""
        task = get_task(spec.task)
        split = split_site(
            frame,
            task.labels(frame, spec) if task.has_classes else None,
            holdout_fraction=holdout_fraction,
            seed=derive_seed(seed, "split", name),
        )
        return cls(name=name, spec=spec, split=split)

    @classmethod
    def load(
        cls,
        *,
        name: str,
        spec: DomainSpec,
        path: Path,
        holdout_fraction: float,
        seed: int,
        simulated: bool = False,
    ) -> "LocalSite":
        """Read the site's data and split it."""
        frame = read_site_data(path, spec, site=name, simulated=simulated)
        return cls.from_frame(name=name, spec=spec, frame=frame, holdout_fraction=holdout_fraction, seed=seed)

    def statistics(self) -> SiteStatistics:
        """Counts and sums of the training rows (and class counts), for federated preprocessing."""
        labels = self.task.labels(self.split.train, self.spec) if self.task.has_classes else None
        return site_statistics(self.split.train, self.spec, labels)

    def arrays(self, preprocessor: Preprocessor, part: str) -> tuple[np.ndarray, np.ndarray]:
        """Features and labels of the `train` or `holdout` part."""
        frame = self.split.train if part == "train" else self.split.holdout
        return self.task.features(frame, self.spec, preprocessor), self.task.labels(frame, self.spec)


def build_global_model(
    factory: ModelFactory,
    *,
    input_dim: int,
    output_dim: int,
    options: dict[str, Any],
    weights_payload: bytes | None = None,
) -> tuple[torch.nn.Module, dict[str, NamedArrays]]:
    """Build the domain's model, load the global weights of a payload, return it and the extras."""
    model = factory(input_dim=input_dim, output_dim=output_dim, **options)
    extras: dict[str, NamedArrays] = {}
    if weights_payload is not None:
        weights, extras = split_payload(decode(weights_payload))
        set_weights(model, decode(encode(weights), like=get_weights(model)))
    return model, extras


@dataclass(frozen=True)
class SiteModels:
    """Builds the domain's model at a site, loaded with the weights of a payload."""

    spec: DomainSpec
    factory: ModelFactory

    @property
    def task(self) -> TaskKind:
        """The domain's task kind."""
        return get_task(self.spec.task)

    def load(self, payload: bytes, *, input_dim: int) -> torch.nn.Module:
        """The model with the payload's weights (extra tensor sets are ignored)."""
        model, _ = build_global_model(
            self.factory,
            input_dim=input_dim,
            output_dim=self.task.output_dim(self.spec),
            options=self.spec.model,
            weights_payload=payload,
        )
        return model
