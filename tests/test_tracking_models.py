"""MLflow 3 logged models per round, described registry versions, and champion tags that stay true.

Real MLflow (SQLite in a temporary folder): a real two-round federation, and trackers driven
directly with real round versions of the healthcare model to move the champion across runs.
"""

import dataclasses
import math
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from domains import Domain
from fedflow.config import FederationConfig, LocalTrainConfig
from fedflow.params import encode
from fedflow.rounds import initial_weights
from fedflow.site import LocalSite
from fedflow.sitedata import missing_codes
from fedflow.tabular import fit_preprocessor
from fedflow.tasks import get_task
from flows.tracking import (
    CHAMPION_ALIAS,
    CHAMPION_TAG,
    SELECTION_CAVEAT,
    FederationTracker,
    RoundVersion,
    load_champion,
)

MODEL = "healthcare-global"


def _config(rounds: int) -> FederationConfig:
    return FederationConfig(rounds=rounds, local=LocalTrainConfig(epochs=2), seed=0)


def _raw_features(healthcare: Domain) -> pd.DataFrame:
    raw = pd.read_csv(
        healthcare.site_path("cleveland"), dtype={c.name: "string" for c in healthcare.spec.categorical}
    )
    return raw[healthcare.spec.feature_columns]


def test_each_round_is_a_logged_model_with_its_metrics_registered_from_it(
    prefect_api: None, mlflow_store: str, healthcare: Domain
) -> None:
    from flows.coordinator import federated_training

    result = federated_training(domain="healthcare", federation=_config(2), run_name="logged-models")
    client = MlflowClient(mlflow_store)
    run = client.get_run(result.mlflow_run_id)

    # One logged model per round, an output of the run at step = round (the runs table's Models column).
    models = client.search_logged_models([run.info.experiment_id])
    by_round = {int(model.tags["round"]): model for model in models}
    assert sorted(by_round) == [1, 2] and len(models) == 2
    assert {output.step: output.model_id for output in run.outputs.model_outputs} == {
        step: model.model_id for step, model in by_round.items()
    }
    for step, model in by_round.items():
        assert model.source_run_id == run.info.run_id
        assert str(model.status) == "READY"
        assert model.params["strategy"] == "fedavg" and model.params["round"] == str(step)
        # The round's metrics are linked to the round's model, at its step.
        linked = {metric.key: metric for metric in model.metrics or []}
        assert {"global/roc_auc", "global/loss", "worst/roc_auc"} <= set(linked)
        assert all(metric.step == step for metric in linked.values())
        (logged,) = [
            m for m in client.get_metric_history(run.info.run_id, "global/roc_auc") if m.step == step
        ]
        assert linked["global/roc_auc"].value == pytest.approx(logged.value)

    # Each version is registered from its round's logged model, described and ranked.
    versions = {v.tags["round"]: v for v in client.search_model_versions(f"name='{MODEL}'")}
    assert sorted(versions) == ["1", "2"]
    for round_text, version in versions.items():
        model = by_round[int(round_text)]
        assert version.source == f"models:/{model.model_id}"
        assert version.run_id == run.info.run_id
        assert version.tags["ranking_metric"] == "roc_auc"
        assert math.isfinite(float(version.tags["ranking_value"]))
        assert version.tags["run_name"] == run.info.run_name
        assert f"Round {round_text} global model of the fedavg federation" in version.description
        assert "roc_auc" in version.description
        assert str(version.version) in model.tags["mlflow.modelVersions"]

    registered = client.get_registered_model(MODEL)
    assert SELECTION_CAVEAT in registered.description

    # The champion loads from the registry and predicts from raw columns; only it is tagged champion.
    champion = client.get_model_version_by_alias(MODEL, CHAMPION_ALIAS)
    assert str(champion.version) == result.champion_version
    assert [v.version for v in versions.values() if CHAMPION_TAG in v.tags] == [champion.version]
    assert SELECTION_CAVEAT in client.get_model_version(MODEL, champion.version).description
    predictions = mlflow.pyfunc.load_model(f"models:/{MODEL}@{CHAMPION_ALIAS}").predict(
        _raw_features(healthcare)
    )
    probability = predictions["probability"].to_numpy()
    assert np.isfinite(probability).all() and probability.std() > 0.01
    assert load_champion("healthcare").version == str(champion.version)


def _round_version(healthcare: Domain, round_number: int, strategy: str, value: float) -> RoundVersion:
    """A real (untrained) healthcare global model, as the recorder would hand it over."""
    spec = healthcare.spec
    site = LocalSite.load(
        name="cleveland", spec=spec, path=healthcare.site_path("cleveland"), holdout_fraction=0.3, seed=0
    )
    preprocessor = fit_preprocessor(site.statistics(), spec)
    task = get_task(spec.task)
    dims = {"input_dim": len(preprocessor.feature_names), "output_dim": task.output_dim(spec)}
    weights = initial_weights(healthcare.build_model, seed=round_number, options=spec.model, **dims)
    return RoundVersion(
        round_number=round_number,
        strategy=strategy,
        weights_payload=encode(weights),
        preprocessor=preprocessor,
        model_code=healthcare.root / "model.py",
        model_options=spec.model,
        missing_codes=missing_codes(spec),
        task=spec.task,
        classes=list(spec.target.classes),
        output_dim=task.output_dim(spec),
        ranking_metric="roc_auc",
        ranking_value=value,
        sites=("cleveland", "va_long_beach"),
        epsilon=1.5 if strategy == "fedprox" else None,
    )


def _federation(healthcare: Domain, run_name: str, strategy: str, values: list[float]) -> FederationTracker:
    """A tracked federation whose rounds score `values`; each round offered as champion."""
    tracker = FederationTracker.start(domain="healthcare", run_name=run_name, params={}, tags={})
    for round_number, value in enumerate(values, start=1):
        version = tracker.register_round(version=_round_version(healthcare, round_number, strategy, value))
        tracker.offer_champion(version, value, metric="roc_auc")
        tracker.log_metrics({"global/roc_auc": value}, step=round_number)
    return tracker


def _tagged_champions(client: MlflowClient) -> list[str]:
    return sorted(
        str(v.version) for v in client.search_model_versions(f"name='{MODEL}'") if CHAMPION_TAG in v.tags
    )


def test_champion_tag_and_note_move_with_the_alias_across_runs(mlflow_store: str, healthcare: Domain) -> None:
    client = MlflowClient(mlflow_store)
    first = _federation(healthcare, "healthcare-fedavg", "fedavg", [0.70, 0.80])
    first.finish()
    assert first.champion == ("2", 0.80)
    assert _tagged_champions(client) == ["2"]
    # Version 1 held the alias after round 1; its champion tag and note left with it.
    assert "Champion:" not in client.get_model_version(MODEL, "1").description
    assert client.get_model_version(MODEL, "1").tags["ranking_value"] == repr(0.70)

    # A later run with another strategy compares against the holder's ranking tags.
    second = FederationTracker.start(domain="healthcare", run_name="healthcare-fedprox", params={}, tags={})
    weaker = second.register_round(version=_round_version(healthcare, 1, "fedprox", 0.75))
    assert not second.offer_champion(weaker, 0.75, metric="roc_auc")
    source = second.champion_source()
    assert source is not None and not source.this_run
    assert (source.version, source.value, source.metric) == ("2", 0.80, "roc_auc")
    assert (source.run_id, source.run_name, source.round_number) == (first.run_id, "healthcare-fedavg", 2)
    assert "an earlier run, healthcare-fedavg" in source.summary()

    stronger = second.register_round(version=_round_version(healthcare, 2, "fedprox", 0.90))
    assert second.offer_champion(stronger, 0.90, metric="roc_auc")
    assert _tagged_champions(client) == [stronger]
    former = client.get_model_version(MODEL, "2")
    assert CHAMPION_TAG not in former.tags and "Champion:" not in former.description
    assert former.tags["ranking_metric"] == "roc_auc"  # the ranking stays on every version
    holder = client.get_model_version_by_alias(MODEL, CHAMPION_ALIAS)
    assert str(holder.version) == stronger
    assert SELECTION_CAVEAT in holder.description
    assert holder.tags["strategy"] == "fedprox" and holder.tags["epsilon"] == repr(1.5)
    assert holder.tags["sites"] == "cleveland,va_long_beach"
    assert "ε = 1.5" in holder.description
    source = second.champion_source()
    assert source is not None and source.this_run and source.run_name == "healthcare-fedprox"
    second.finish()

    # Every version is ranked and described, champion or not.
    for version in client.search_model_versions(f"name='{MODEL}'"):
        assert {"ranking_metric", "ranking_value", "run_id", "run_name", "round"} <= set(version.tags)
        assert version.description.startswith(f"Round {version.tags['round']} global model")
    features = _raw_features(healthcare)
    assert len(mlflow.pyfunc.load_model(f"models:/{MODEL}@{CHAMPION_ALIAS}").predict(features)) == len(
        features
    )


def test_a_version_registered_without_its_ranking_gets_it_when_offered(
    mlflow_store: str, healthcare: Domain
) -> None:
    tracker = FederationTracker.start(domain="healthcare", run_name="unranked", params={}, tags={})
    plain = _round_version(healthcare, 1, "fedavg", math.nan)
    unranked = dataclasses.replace(plain, ranking_metric="")
    version = tracker.register_round(version=unranked)
    # A round not every site evaluated is offered as NaN: ranked "nan", never champion.
    assert not tracker.offer_champion(version, math.nan, metric="roc_auc")
    tracker.finish()
    stored = MlflowClient(mlflow_store).get_model_version(MODEL, version)
    assert stored.tags["ranking_metric"] == "roc_auc" and math.isnan(float(stored.tags["ranking_value"]))
    assert "not ranked" in stored.description and CHAMPION_TAG not in stored.tags
    assert tracker.champion_source() is None


def test_metrics_of_steps_without_a_round_model_are_not_linked(mlflow_store: str, tmp_path: Path) -> None:
    tracker = FederationTracker.start(domain="healthcare", run_name="unlinked", params={}, tags={})
    tracker.log_metrics({"sites/eligible": 4.0}, step=0)
    tracker.finish()
    client = MlflowClient(mlflow_store)
    assert client.search_logged_models([tracker.experiment_id]) == []
    assert client.get_run(tracker.run_id).data.metrics == {"sites/eligible": 4.0}


def test_thousands_of_simulated_sites_are_counted_not_listed(mlflow_store: str, healthcare: Domain) -> None:
    tracker = FederationTracker.start(domain="healthcare", run_name="many", params={}, tags={})
    clients = tuple(f"client-{i:05d}" for i in range(2000))
    many = dataclasses.replace(_round_version(healthcare, 1, "fedavg", 0.7), sites=clients)
    version = tracker.register_round(version=many)
    tracker.finish()
    stored = MlflowClient(mlflow_store).get_model_version(MODEL, version)
    assert stored.tags["sites"] == "2000 sites" and stored.tags["sites.count"] == "2000"
    assert "Trained by 2000 site(s): 2000 sites." in stored.description
