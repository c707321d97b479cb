"""The local step a site runs, the same in simulation and cross-silo mode.

A site keeps its rows here; what it returns (statistics, updates, metrics) is what may cross
the site boundary.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fedflow.config import LocalTrainConfig
from fedflow.domain import DomainSpec
from fedflow.local import evaluate_local, train_local
from fedflow.params import decode, encode, get_weights, set_weights, subtract
from fedflow.seeding import derive_seed
from fedflow.sitedata import SiteSplit, partition_rows, read_site_frame, split_site
from fedflow.tabular import Preprocessor, SiteStatistics, site_statistics
from fedflow.tasks import TaskKind, get_task
from fedflow.update import SiteUpdate

ModelFactory = Callable[..., torch.nn.Module]


def read_site_data(path: Path, spec: DomainSpec, *, site: str, simulated: bool) -> pd.DataFrame:
    """A site's frame: its own file, or (simulated sites) its share of the partitioned table."""
    frame = read_site_frame(path, spec, site=site)
    return partition_rows(frame, spec, site) if simulated else frame


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
        split = split_site(
            frame,
            get_task(spec.task).labels(frame, spec),
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
        labels = self.task.labels(self.split.train, self.spec) if self.spec.task != "regression" else None
        return site_statistics(self.split.train, self.spec, labels)

    def arrays(self, preprocessor: Preprocessor, part: str) -> tuple[np.ndarray, np.ndarray]:
        """Features and labels of the `train` or `holdout` part."""
        frame = self.split.train if part == "train" else self.split.holdout
        return preprocessor.transform(frame), self.task.labels(frame, self.spec)


def build_global_model(
    factory: ModelFactory,
    *,
    input_dim: int,
    output_dim: int,
    options: dict[str, Any],
    weights_payload: bytes | None = None,
) -> torch.nn.Module:
    """Build the domain's model and, if given, load global weights from a safetensors payload."""
    model = factory(input_dim=input_dim, output_dim=output_dim, **options)
    if weights_payload is not None:
        set_weights(model, decode(weights_payload, like=get_weights(model)))
    return model


def local_train_step(
    *,
    site: str,
    round_number: int,
    spec: DomainSpec,
    factory: ModelFactory,
    global_payload: bytes,
    features: np.ndarray,
    labels: np.ndarray,
    config: LocalTrainConfig,
    seed: int,
    class_weights: Sequence[float] | None = None,
) -> SiteUpdate:
    """Train the global model on the site's rows and return the encoded weight delta."""
    task = get_task(spec.task)
    model = build_global_model(
        factory,
        input_dim=features.shape[1],
        output_dim=task.output_dim(spec),
        options=spec.model,
        weights_payload=global_payload,
    )
    start = get_weights(model)
    result = train_local(
        model,
        features,
        labels,
        task=task,
        config=config,
        seed=derive_seed(seed, "train", round_number, site),
        class_weights=class_weights,
    )
    delta = subtract(get_weights(model), start)
    return SiteUpdate(
        site=site,
        round=round_number,
        num_examples=result.num_examples,
        payload=encode(delta),
        metrics={"train_loss": result.loss},
    )


def local_evaluate_step(
    *,
    spec: DomainSpec,
    factory: ModelFactory,
    global_payload: bytes,
    features: np.ndarray,
    labels: np.ndarray,
) -> dict[str, float]:
    """Evaluate the global model on the site's hold-out rows; only the metrics leave."""
    task = get_task(spec.task)
    model = build_global_model(
        factory,
        input_dim=features.shape[1],
        output_dim=task.output_dim(spec),
        options=spec.model,
        weights_payload=global_payload,
    )
    return evaluate_local(model, features, labels, task=task)
