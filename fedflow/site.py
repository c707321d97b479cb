"""The local step a site runs, the same in simulation and cross-silo mode.

A site keeps its rows here; what it returns (statistics, updates, metrics) is what may cross
the site boundary.
"""

from collections.abc import Callable
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
from fedflow.sitedata import SiteSplit, binary_labels, read_site_frame, split_site
from fedflow.tabular import Preprocessor, SiteStatistics, site_statistics
from fedflow.update import SiteUpdate

ModelFactory = Callable[..., torch.nn.Module]


@dataclass
class LocalSite:
    """One site's data and settings; lives only at the site."""

    name: str
    spec: DomainSpec
    split: SiteSplit

    @classmethod
    def load(
        cls, *, name: str, spec: DomainSpec, path: Path, holdout_fraction: float, seed: int
    ) -> "LocalSite":
        """Read the site's file and split it (seeded per site, stratified by label)."""
        return cls.from_frame(
            name=name,
            spec=spec,
            frame=read_site_frame(path, spec, site=name),
            holdout_fraction=holdout_fraction,
            seed=seed,
        )

    @classmethod
    def from_frame(
        cls, *, name: str, spec: DomainSpec, frame: pd.DataFrame, holdout_fraction: float, seed: int
    ) -> "LocalSite":
        """Split an already read (and validated) frame, seeded per site and stratified by label."""
        split = split_site(
            frame,
            binary_labels(frame, spec),
            holdout_fraction=holdout_fraction,
            seed=derive_seed(seed, "split", name),
        )
        return cls(name=name, spec=spec, split=split)

    def statistics(self) -> SiteStatistics:
        """Counts and sums of the training rows, for federated preprocessing."""
        return site_statistics(self.split.train, self.spec)

    def arrays(self, preprocessor: Preprocessor, part: str) -> tuple[np.ndarray, np.ndarray]:
        """Features and labels of the `train` or `holdout` part."""
        frame = self.split.train if part == "train" else self.split.holdout
        return preprocessor.transform(frame), binary_labels(frame, self.spec)


def build_global_model(
    factory: ModelFactory, *, input_dim: int, options: dict[str, Any], weights_payload: bytes | None = None
) -> torch.nn.Module:
    """Build the domain's model and, if given, load global weights from a safetensors payload."""
    model = factory(input_dim=input_dim, **options)
    if weights_payload is not None:
        set_weights(model, decode(weights_payload, like=get_weights(model)))
    return model


def local_train_step(
    *,
    site: str,
    round_number: int,
    factory: ModelFactory,
    model_options: dict[str, Any],
    global_payload: bytes,
    features: np.ndarray,
    labels: np.ndarray,
    config: LocalTrainConfig,
    seed: int,
) -> SiteUpdate:
    """Train the global model on the site's rows and return the encoded weight delta."""
    model = build_global_model(
        factory, input_dim=features.shape[1], options=model_options, weights_payload=global_payload
    )
    start = get_weights(model)
    result = train_local(
        model, features, labels, config=config, seed=derive_seed(seed, "train", round_number, site)
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
    factory: ModelFactory,
    model_options: dict[str, Any],
    global_payload: bytes,
    features: np.ndarray,
    labels: np.ndarray,
) -> dict[str, float]:
    """Evaluate the global model on the site's hold-out rows; only the metrics leave."""
    model = build_global_model(
        factory, input_dim=features.shape[1], options=model_options, weights_payload=global_payload
    )
    return evaluate_local(model, features, labels)
