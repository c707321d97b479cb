"""Contract tests for every discovered domain: a new template folder gets them for free."""

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from domains import Domain, available_domains, load_domain
from fedflow.config import FederationConfig
from fedflow.site import read_site_data
from fedflow.tabular import fit_preprocessor, merge_statistics, site_statistics
from fedflow.tasks import get_task
from validation import class_minimum_check, validate_frame


@pytest.fixture(scope="module", params=available_domains())
def domain(request: pytest.FixtureRequest) -> Domain:
    return load_domain(str(request.param))


def _frames(domain: Domain) -> dict[str, object]:
    return {
        site: read_site_data(
            domain.site_path(site), domain.spec, site=site, simulated=domain.is_simulated(site)
        )
        for site in domain.spec.site_names
    }


def test_config_parses(domain: Domain) -> None:
    assert domain.spec.name == domain.name
    assert len(domain.spec.site_names) >= 2
    get_task(domain.spec.task)
    FederationConfig.model_validate(domain.spec.federation.model_dump())
    assert (domain.root / "data" / "PROVENANCE.md").is_file(), "every template ships its data's provenance"


def test_every_site_passes_the_domains_own_suite(domain: Domain) -> None:
    task = get_task(domain.spec.task)
    for site, frame in _frames(domain).items():
        summary = validate_frame(frame, domain.expectations, site=site, suite_name=domain.name)  # type: ignore[arg-type]
        assert summary.success, (site, summary.reasons())
        if domain.class_minimum:
            labels = task.labels(frame, domain.spec)  # type: ignore[arg-type]
            assert class_minimum_check(labels, domain.class_minimum).success, site


def test_model_runs_a_forward_pass(domain: Domain) -> None:
    frames = _frames(domain)
    stats = merge_statistics(site_statistics(f, domain.spec) for f in frames.values())  # type: ignore[arg-type]
    preprocessor = fit_preprocessor(stats, domain.spec)
    task = get_task(domain.spec.task)
    model = domain.build_model(
        input_dim=len(preprocessor.feature_names),
        output_dim=task.output_dim(domain.spec),
        **domain.spec.model,
    )
    first = next(iter(frames.values()))
    out = model(task.inputs(task.features(first.head(8), domain.spec, preprocessor)))  # type: ignore[attr-defined]
    # One output per class or value; a language model gives each next token's log-probability.
    assert out.shape[0] == 8 and (
        domain.spec.task == "language" or out.shape[1] == task.output_dim(domain.spec)
    )
    assert torch.isfinite(out).all()
    labels = task.labels(first, domain.spec)  # type: ignore[arg-type]
    assert len(labels) == len(first) and np.isfinite(labels.astype(float)).all()  # type: ignore[arg-type]


def test_one_round_federation_completes(domain: Domain, prefect_api: None, mlflow_store: str) -> None:
    from flows.coordinator import federated_training

    config = domain.spec.federation.model_copy(update={"rounds": 1})
    result = federated_training(domain=domain.name, federation=config, run_name=f"contract-{domain.name}")
    assert sorted(result.per_site) == sorted(domain.spec.site_names)
    task = get_task(domain.spec.task)
    assert set(result.final_metrics) == set(task.metric_names)
    client = MlflowClient(mlflow_store)
    versions = client.search_model_versions(f"name='{domain.name}-global'")
    assert [int(v.version) for v in versions] == [1]
    table = mlflow.artifacts.load_dict(
        mlflow.get_run(result.mlflow_run_id).info.artifact_uri + "/sites/sites.json"
    )
    assert sorted(r[0] for r in table["data"]) == sorted(domain.spec.site_names)
