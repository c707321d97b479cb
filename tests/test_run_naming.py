"""Runs are named for what differs, tagged alike and linked both ways in MLflow and Prefect, and every
option is logged with the value it ran with."""

import re
from datetime import UTC, datetime
from uuid import UUID

import pytest
from mlflow.tracking import MlflowClient

from fedflow.compression import CODECS, build_codec
from fedflow.config import CompressionConfig, FederationConfig, StrategyConfig
from fedflow.option_defaults import declared_defaults
from fedflow.run_names import federation_name, flow_run_tags, run_tags
from fedflow.strategies import STRATEGIES, build_strategy
from flows.ui_links import mlflow_experiment_url, mlflow_model_url, mlflow_run_url, mlflow_ui_base

STARTED = datetime(2026, 12, 2, 16, 35, 1, tzinfo=UTC)
CHECKPOINT_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def _config(**overrides: object) -> FederationConfig:
    return FederationConfig().with_overrides(overrides)


# --- names ------------------------------------------------------------------------------------


def test_a_plain_run_is_named_for_its_domain_strategy_and_time_only() -> None:
    assert federation_name("healthcare", FederationConfig(), STARTED) == "healthcare-fedavg-20261202-163501"


def test_privacy_secure_aggregation_and_the_ε_target_are_in_the_name() -> None:
    config = _config(
        **{
            "strategy.name": "fedprox",
            "privacy.mode": "distributed",
            "privacy.target_epsilon": 2.5,
            "secure_aggregation.enabled": True,
        }
    )
    assert (
        federation_name("healthcare", config, STARTED)
        == "healthcare-fedprox-distdp-eps2p5-secagg-20261202-163501"
    )


def test_a_codec_central_dp_dp_sgd_and_a_seed_other_than_the_default_are_in_the_name() -> None:
    config = _config(
        **{
            "strategy.name": "fedadam",
            "privacy.mode": "central",
            "local.dp_sgd": {"noise_multiplier": 1.1},
            "compression.codec": "topk",
            "seed": 7,
        }
    )
    name = federation_name("healthcare", config, STARTED)
    assert name == "healthcare-fedadam-dp-dpsgd-topk-seed7-20261202-163501"
    assert CHECKPOINT_ID.match(name)
    assert federation_name("healthcare", config, STARTED) == name, "deterministic from config and time"


def test_a_given_run_name_is_kept_as_given() -> None:
    config = _config(**{"strategy.name": "fedprox"})
    assert federation_name("healthcare", config, STARTED, given="my-study_3") == "my-study_3"


def test_characters_a_checkpoint_folder_cannot_hold_are_replaced() -> None:
    name = federation_name("hospital network/eu", FederationConfig(), STARTED)
    assert CHECKPOINT_ID.match(name) and name.startswith("hospital-network-eu-fedavg-")


def test_tags_say_the_same_in_both_uis() -> None:
    config = _config(**{"strategy.name": "fedprox", "privacy.mode": "central", "privacy.target_epsilon": 3})
    tags = run_tags("healthcare", config, "cross-silo")
    assert tags == {
        "fedflow.domain": "healthcare",
        "fedflow.strategy": "fedprox",
        "fedflow.privacy": "central",
        "fedflow.secure_aggregation": "off",
        "fedflow.codec": "none",
        "fedflow.mode": "cross-silo",
        "fedflow.target_epsilon": "3",
    }
    assert "strategy:fedprox" in flow_run_tags(tags) and "mode:cross-silo" in flow_run_tags(tags)
    dp_sgd = _config(**{"privacy.mode": "central", "local.dp_sgd": {}})
    assert run_tags("healthcare", dp_sgd, "simulation")["fedflow.privacy"] == "central+dp-sgd"


# --- every option with its resolved value ------------------------------------------------------


def test_fedprox_mu_and_topk_defaults_are_logged_when_not_given() -> None:
    flat = _config(**{"strategy.name": "fedprox", "compression.codec": "topk"}).flat()
    assert flat["strategy.options.mu"] == 0.01
    assert flat["compression.options.fraction"] == 0.05
    assert flat["compression.options.values"] == "float16"
    assert flat["compression.options.error_feedback"] is True
    given = _config(**{"strategy.name": "fedprox", "strategy.options.mu": 0.5}).flat()
    assert given["strategy.options.mu"] == 0.5, "a given option wins over the default"


def test_dp_and_secure_aggregation_options_are_logged_at_their_defaults() -> None:
    flat = FederationConfig().flat()
    for key in ("privacy.noise_multiplier", "privacy.clip_norm", "secure_aggregation.max_dropouts"):
        assert key in flat, key


def _logged_options(flat: dict[str, object], section: str) -> dict[str, object]:
    prefix = f"{section}.options."
    return {key.removeprefix(prefix): value for key, value in flat.items() if key.startswith(prefix)}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_logs_each_option_it_declares_and_they_rebuild_it(name: str) -> None:
    flat = FederationConfig(strategy=StrategyConfig(name=name)).flat()
    logged = _logged_options(flat, "strategy")
    assert set(declared_defaults(STRATEGIES[name])) <= set(logged)
    built = build_strategy(name, logged)  # the logged options, replayed, build the variant that ran
    for option, value in logged.items():
        if hasattr(built, option):
            assert getattr(built, option) == value, option


@pytest.mark.parametrize("name", sorted(CODECS))
def test_every_codec_logs_each_option_it_declares_and_they_rebuild_it(name: str) -> None:
    flat = FederationConfig(compression=CompressionConfig(codec=name)).flat()
    logged = _logged_options(flat, "compression")
    assert set(declared_defaults(CODECS[name])) <= set(logged)
    built = build_codec(name, logged)
    for option, value in logged.items():
        if hasattr(built, option):
            assert getattr(built, option) == value, option


def test_keywords_a_registry_entry_binds_are_not_options() -> None:
    assert "variant" not in declared_defaults(STRATEGIES["fedadam"])
    assert "keep" not in declared_defaults(STRATEGIES["krum"]) and "keep" in declared_defaults(
        STRATEGIES["multikrum"]
    )


# --- links --------------------------------------------------------------------------------------


def test_mlflow_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEDFLOW_MLFLOW_UI_URL", raising=False)
    assert mlflow_ui_base() == "http://127.0.0.1:5000"
    monkeypatch.setenv("FEDFLOW_MLFLOW_UI_URL", "https://mlflow.example.org/")
    base = mlflow_ui_base()
    assert mlflow_run_url(base, "3", "abc") == "https://mlflow.example.org/#/experiments/3/runs/abc"
    assert mlflow_experiment_url(base, "3").endswith("/#/experiments/3/runs?workflowType=machine_learning")
    assert mlflow_model_url(base, "healthcare-global", "2").endswith("/#/models/healthcare-global/versions/2")


def test_a_real_run_is_named_tagged_and_linked_in_mlflow_and_prefect(
    prefect_api: None, mlflow_store: str
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.coordinator import federated_training

    config = _config(rounds=1, audit=False, **{"strategy.name": "fedprox"})
    result = federated_training(domain="healthcare", federation=config)

    run = MlflowClient(mlflow_store).get_run(result.mlflow_run_id)
    name = run.info.run_name
    assert name == result.federation_id and name.startswith("healthcare-fedprox-")
    assert run.data.params["strategy.options.mu"] == "0.01"
    expected_tags = run_tags("healthcare", config, "simulation")
    assert expected_tags.items() <= run.data.tags.items()
    flow_run_id = run.data.tags["fedflow.prefect_flow_run_id"]
    assert flow_run_id == result.prefect_flow_run_id
    assert flow_run_id in run.data.tags["mlflow.note.content"]
    if "fedflow.prefect_flow_run_url" in run.data.tags:  # only when a Prefect UI is known
        assert run.data.tags["fedflow.prefect_flow_run_url"].endswith(f"/runs/flow-run/{flow_run_id}")
    assert result.mlflow_run_url.endswith(f"/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}")

    with get_client(sync_client=True) as prefect:
        flow_run = prefect.read_flow_run(UUID(flow_run_id))
        artifacts = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]))
        )
    assert flow_run.name == name
    assert set(flow_run_tags(expected_tags)) <= set(flow_run.tags)
    (link,) = [a for a in artifacts if a.key == "healthcare-mlflow-run"]
    assert f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id})" in str(link.data)
