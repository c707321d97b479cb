"""The coordinator flow end to end: real Prefect API, real MLflow (SQLite), real GX, real torch."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from domains import Domain
from fedflow.config import FederationConfig, LocalTrainConfig
from fedflow.errors import InsufficientSitesError
from flows.coordinator import SiteSelection, federated_training


def _sites_file(tmp_path: Path, domain: Domain, broken: dict[str, str]) -> Path:
    """A sites mapping using the shipped files, with some sites replaced by broken copies."""
    mapping = {site: str(domain.site_path(site)) for site in domain.spec.sites}
    for site, kind in broken.items():
        frame = pd.read_csv(domain.site_path(site), dtype=str)  # keep the file's text as it is
        if kind == "out_of_range":
            frame.loc[frame.index[:4], "age"] = "150"
        elif kind == "missing_column":
            frame = frame.drop(columns=["cp"])
        elif kind == "missing_file":
            mapping[site] = str(tmp_path / f"{site}-never-exported.csv")
            continue
        path = tmp_path / f"{site}-broken.csv"
        frame.to_csv(path, index=False)
        mapping[site] = str(path)
    path = tmp_path / "sites.yaml"
    path.write_text(json.dumps({"sites": mapping}))  # JSON is YAML
    return path


def _config(rounds: int = 2) -> FederationConfig:
    return FederationConfig(rounds=rounds, seed=1, local=LocalTrainConfig(epochs=1, learning_rate=0.05))


def test_two_rounds_with_an_excluded_site(
    prefect_api: None, mlflow_store: str, healthcare: Domain, tmp_path: Path
) -> None:
    sites_file = _sites_file(tmp_path, healthcare, {"hungary": "out_of_range", "switzerland": "missing_file"})
    result = federated_training(
        domain="healthcare", federation=_config(), sites=SiteSelection(files=str(sites_file)), run_name="e2e"
    )

    # The failing site is left out, with its reason, everywhere a user looks.
    assert sorted(result.excluded_sites) == ["hungary", "switzerland"]
    assert any("expect_column_values_to_be_between(age)" in r for r in result.excluded_sites["hungary"])
    (missing,) = result.excluded_sites["switzerland"]
    assert "site 'switzerland'" in missing and "does not exist" in missing
    assert "never-exported" not in missing, "the site's path must not reach the coordinator"
    assert sorted(result.per_site) == ["cleveland", "va_long_beach"]

    client = MlflowClient(mlflow_store)
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["sites.excluded"] == "hungary,switzerland"
    assert run.data.params["rounds"] == "2" and run.data.params["strategy.name"] == "fedavg"
    assert "sites_file" not in json.dumps(run.data.params), "site paths must not be logged"
    hungary = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path="validation/hungary.json", tracking_uri=mlflow_store
            )
        ).read_text()
    )
    assert hungary["success"] is False
    assert "150" not in json.dumps(hungary), "validation summaries carry counts, not values"

    # ...and in Prefect, as the validation artifact of the flow run.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["healthcare-validation"]))
        )
    assert any("hungary" in str(a.data) and "excluded" in str(a.data) for a in artifacts)

    # Metrics per round: global, per site, worst site, communication.
    for key in (
        "global/roc_auc",
        "global/loss",
        "worst/roc_auc",
        "site/cleveland/roc_auc",
        "network/bytes_sent",
    ):
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == [1, 2], key
    auc = client.get_metric_history(run.info.run_id, "global/roc_auc")[-1].value
    worst = client.get_metric_history(run.info.run_id, "worst/roc_auc")[-1].value
    assert 0.0 <= worst <= auc <= 1.0 and auc > 0.6
    assert client.get_metric_history(run.info.run_id, "site/hungary/roc_auc") == []
    received = client.get_metric_history(run.info.run_id, "network/bytes_received")[-1].value
    assert received > 0

    # The privacy audit ran at every eligible site and only its scores were logged.
    assert sorted(result.audit) == ["cleveland", "va_long_beach"]
    for key in ("privacy/mia_loss_auc_max", "privacy/mia_calibrated_tpr_at_1fpr_max"):
        (value,) = [m.value for m in client.get_metric_history(run.info.run_id, key)]
        assert 0.0 <= value <= 1.0

    # One registered version per round, tagged; the champion alias on the best one.
    versions = client.search_model_versions("name='healthcare-global'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    for version in versions:
        assert version.tags["run_id"] == run.info.run_id
        assert version.tags["strategy"] == "fedavg"
        assert version.tags["round"] in {"1", "2"}
    champion = client.get_model_version_by_alias("healthcare-global", "champion")
    assert str(champion.version) == result.champion_version

    # The registered model predicts from raw site columns, missing values included.
    model = mlflow.pyfunc.load_model(f"models:/healthcare-global/{champion.version}")
    raw = pd.read_csv(
        healthcare.site_path("va_long_beach"), dtype={c.name: "string" for c in healthcare.spec.categorical}
    )
    features = raw[healthcare.spec.feature_columns]
    assert features.isna().any().any()
    predictions = model.predict(features)
    assert list(predictions.columns) == ["probability", "prediction"]
    assert len(predictions) == len(raw)
    probability = predictions["probability"].to_numpy()
    assert np.isfinite(probability).all() and ((probability > 0) & (probability < 1)).all()
    assert probability.std() > 0.01, "predictions must depend on the patient"


def test_run_stops_when_too_few_sites_pass(
    prefect_api: None, mlflow_store: str, healthcare: Domain, tmp_path: Path
) -> None:
    sites_file = _sites_file(
        tmp_path,
        healthcare,
        {"hungary": "out_of_range", "switzerland": "missing_column", "cleveland": "out_of_range"},
    )
    with pytest.raises(InsufficientSitesError, match=r"only 1 site\(s\) passed validation.*min_sites is 2"):
        federated_training(
            domain="healthcare",
            federation=_config(),
            sites=SiteSelection(files=str(sites_file)),
            run_name="too-few",
        )
    client = MlflowClient(mlflow_store)
    run = client.search_runs([client.get_experiment_by_name("healthcare").experiment_id])[0]
    assert run.info.status == "FAILED"
    assert "min_sites" in run.data.tags["failure_reason"]
    assert client.search_model_versions("name='healthcare-global'") == []


def test_same_seed_same_global_model(prefect_api: None, mlflow_store: str) -> None:
    first = federated_training(domain="healthcare", federation=_config(rounds=1), run_name="a")
    second = federated_training(domain="healthcare", federation=_config(rounds=1), run_name="b")
    assert first.final_metrics == second.final_metrics


def test_scaffold_with_personalisation_logs_both_and_a_plot(prefect_api: None, mlflow_store: str) -> None:
    from fedflow.config import StrategyConfig

    plain = federated_training(domain="healthcare", federation=_config(rounds=2), run_name="plain")
    config = _config(rounds=2).model_copy(
        update={"strategy": StrategyConfig(name="scaffold"), "personalization_steps": 5}
    )
    result = federated_training(domain="healthcare", federation=config, run_name="scaffold")
    client = MlflowClient(mlflow_store)
    history = client.get_metric_history(result.mlflow_run_id, "global/personalised/roc_auc")
    assert [m.step for m in history] == [1, 2]
    assert "personalised/roc_auc" in result.per_site["cleveland"]
    # SCAFFOLD's control variates travel both ways: about twice FedAvg's bytes.
    sent = client.get_metric_history(result.mlflow_run_id, "network/bytes_received")[-1].value
    plain_sent = client.get_metric_history(plain.mlflow_run_id, "network/bytes_received")[-1].value
    assert 1.8 < sent / plain_sent < 2.2
    artifacts = [a.path for a in client.list_artifacts(result.mlflow_run_id)]
    assert "metrics_by_round.png" in artifacts
    assert result.final_metrics != plain.final_metrics
