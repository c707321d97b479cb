"""Shared fixtures: the real healthcare domain, a temporary MLflow store, a temporary Prefect API."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import flows  # noqa: F401  (no-telemetry defaults before Prefect/MLflow/GX load)
from domains import Domain, load_domain


@pytest.fixture(scope="session")
def healthcare() -> Domain:
    """The shipped healthcare template with its four hospitals."""
    return load_domain("healthcare")


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A real, temporary Prefect API (SQLite in a temporary folder) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """MLflow on a SQLite file and an artifact folder, both in a temporary folder."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("FEDFLOW_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    yield uri
    if mlflow.active_run() is not None:
        mlflow.end_run()
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def site_step_inputs(domain: Domain, site: str, **overrides: object) -> dict[str, object]:
    """Keyword arguments for `fedflow.site.local_train_step` at one real site, round 1."""
    from fedflow.config import LocalTrainConfig
    from fedflow.params import encode
    from fedflow.rounds import initial_weights
    from fedflow.site import LocalSite
    from fedflow.tabular import fit_preprocessor

    local = LocalSite.load(
        name=site, spec=domain.spec, path=domain.site_path(site), holdout_fraction=0.25, seed=0
    )
    preprocessor = fit_preprocessor(local.statistics(), domain.spec)
    x, y = local.arrays(preprocessor, "train")
    weights = initial_weights(
        domain.build_model, input_dim=x.shape[1], output_dim=1, options=domain.spec.model, seed=0
    )
    inputs: dict[str, object] = {
        "site": site,
        "round_number": 1,
        "spec": domain.spec,
        "factory": domain.build_model,
        "global_payload": encode(weights),
        "features": x,
        "labels": y,
        "config": LocalTrainConfig(),
        "seed": 0,
    }
    inputs.update(overrides)
    return inputs


def sites_file_with_broken_hungary(domain: Domain, folder: Path) -> Path:
    """A sites YAML for the healthcare hospitals in which hungary's file fails its checks (ages of 150)."""
    import json

    import pandas as pd

    mapping = {site: str(domain.site_path(site)) for site in domain.spec.site_names}
    frame = pd.read_csv(mapping["hungary"], dtype=str)
    frame.loc[frame.index[:3], "age"] = "150"
    frame.to_csv(folder / "hungary.csv", index=False)
    mapping["hungary"] = str(folder / "hungary.csv")
    path = folder / "sites.yaml"
    path.write_text(json.dumps({"sites": mapping}))
    return path
