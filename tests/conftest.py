"""Shared fixtures: the real healthcare domain, a temporary MLflow store, a temporary Prefect API."""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import flows  # noqa: F401  (no-telemetry defaults before Prefect/MLflow/GX load)
from domains import Domain, load_domain
from fedflow.errors import DomainError

# What makes a test slow (`make test-fast` deselects it): a real Prefect API or MLflow store, a
# module that starts processes (coordinator, sites, Prefect servers), or the domain contract's
# forward pass on a language domain without `model.path`, which loads the real SmolLM2-135M
# (about 35 s on two cores). A test slow for another reason carries `@pytest.mark.slow`.
SLOW_FIXTURES = frozenset({"prefect_api", "mlflow_store"})
PROCESS_MODULES = frozenset({"test_cross_silo.py", "test_resume.py", "test_api_warmup.py"})
BUILDS_DOMAIN_MODEL = frozenset({"test_model_runs_a_forward_pass"})


def _loads_real_language_model(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    if getattr(item, "originalname", None) not in BUILDS_DOMAIN_MODEL or callspec is None:
        return False
    try:
        spec = load_domain(str(callspec.params.get("domain"))).spec
    except DomainError:
        return False  # the test itself reports a domain that does not load
    return spec.task == "language" and spec.model.get("path") is None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark slow every test that needs a server, a store, a subprocess or the real language model."""
    for item in items:
        if (
            SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ()))
            or item.path.name in PROCESS_MODULES
            or _loads_real_language_model(item)
        ):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _no_background_prefect_server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fast test boots no Prefect server: `fedflow run` starts one in the background before it
    checks its arguments, which the CLI's argument tests would otherwise leave running."""
    if request.node.get_closest_marker("slow") is None:
        from flows import api_warmup

        monkeypatch.setattr(api_warmup, "warm_up_api", lambda: None)


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
    with mlflow_store_in(tmp_path, monkeypatch) as uri:
        yield uri
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@contextlib.contextmanager
def mlflow_store_in(folder: Path, patch: pytest.MonkeyPatch) -> Iterator[str]:
    """MLflow on `folder/mlflow.db` with artifacts beside it, the working directory there; for
    fixtures of any scope (a module-scoped one passes a `pytest.MonkeyPatch.context()`)."""
    import mlflow

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    patch.setenv("MLFLOW_TRACKING_URI", uri)
    patch.setenv("FEDFLOW_ARTIFACT_ROOT", str(folder / "artifacts"))
    patch.chdir(folder)
    mlflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        if mlflow.active_run() is not None:
            mlflow.end_run()


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
