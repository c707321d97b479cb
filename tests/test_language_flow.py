"""Federated LoRA end to end on a tiny Llama (real Prefect, MLflow, GX): the update path on adapters."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from tiny_language_model import save_tiny_llama, speeches, tiny_language_domain

from domains import load_domain
from fedflow.checkpoint import load_checkpoint
from fedflow.config import FederationConfig
from fedflow.errors import FedflowError
from fedflow.language.base_model import locate_base_model, weights_digest
from fedflow.language.options import language_options
from fedflow.local import evaluate_local
from fedflow.params import encode, set_weights
from fedflow.rounds import initial_weights
from fedflow.seeding import derive_seed
from fedflow.site import LocalSite
from fedflow.tasks import get_task
from flows.coordinator import federated_training

DOMAIN = "tiny_language"


@pytest.fixture(scope="module")
def tiny_domains(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("domains")
    model = save_tiny_llama(root / "tiny-llama", speeches("hamlet") + speeches("iago"))
    tiny_language_domain(root, model)
    return root


@pytest.fixture
def language_env(
    tiny_domains: Path, monkeypatch: pytest.MonkeyPatch, prefect_api: None, mlflow_store: str
) -> str:
    monkeypatch.setenv("FEDFLOW_DOMAINS_PATH", str(tiny_domains))
    return mlflow_store


def _config(**changes: object) -> FederationConfig:
    base = load_domain(DOMAIN).spec.federation.model_dump()
    base.update({"rounds": 2, **changes})
    return FederationConfig.model_validate(base)


def _history(run_id: str, key: str) -> list[float]:
    return [m.value for m in sorted(MlflowClient().get_metric_history(run_id, key), key=lambda m: m.step)]


def test_a_site_with_another_base_model_is_excluded(
    tiny_domains: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fedflow.federation import DomainModel, FederationPlan
    from fedflow.federation.preparation import _same_base_model
    from fedflow.messages import PrepareReply
    from fedflow.validation_summary import ValidationSummary

    monkeypatch.setenv("FEDFLOW_DOMAINS_PATH", str(tiny_domains))
    domain = load_domain(DOMAIN)
    spec = domain.spec
    ours = weights_digest(locate_base_model(language_options(spec.model)))
    plan = FederationPlan(
        federation_id="f",
        domain=DomainModel(name=DOMAIN, spec=spec, build_model=domain.build_model),
        config=spec.federation,
        sites=["a", "b"],
    )
    prepared = {
        "a": PrepareReply(summary=ValidationSummary(site="a", success=True, rows=60), base_model_sha256=ours),
        "b": PrepareReply(
            summary=ValidationSummary(site="b", success=True, rows=60), base_model_sha256="0" * 64
        ),
    }
    checked = _same_base_model(prepared, plan)
    assert checked["a"] is prepared["a"]
    assert not checked["b"].summary.success and "another base model" in checked["b"].summary.reasons()[0]


def _base_perplexity(config: FederationConfig) -> float:
    """The round-0 model (LoRA B = 0: the base model) on the flow's hold-outs, averaged as the flow does."""
    domain = load_domain(DOMAIN)
    task = get_task("language")
    model = domain.build_model(**domain.spec.model)
    set_weights(
        model,
        initial_weights(
            domain.build_model,
            input_dim=0,
            output_dim=0,
            options=domain.spec.model,
            seed=derive_seed(config.seed, "init"),
        ),
    )
    total = rows = 0.0
    for site in domain.spec.site_names:
        local = LocalSite.load(
            name=site,
            spec=domain.spec,
            path=domain.site_path(site),
            holdout_fraction=config.holdout_fraction,
            seed=config.seed,
        )
        x, y = local.arrays(None, "holdout")  # type: ignore[arg-type]
        total += evaluate_local(model, x, y, task=task)["perplexity"] * len(x)
        rows += len(x)
    return total / rows


def test_federated_lora_learns_and_registers_adapters(language_env: str) -> None:
    config = _config(rounds=3)
    result = federated_training(domain=DOMAIN, federation=config, run_name="lora")
    assert result.rounds_completed == 3 and sorted(result.per_site) == sorted(
        load_domain(DOMAIN).spec.site_names
    )
    assert set(result.final_metrics) == {"loss", "perplexity"}
    perplexity = _history(result.mlflow_run_id, "global/perplexity")
    # The federation's perplexity is exp of its mean token loss, not a mean of perplexities.
    loss = _history(result.mlflow_run_id, "global/loss")
    np.testing.assert_allclose(perplexity, np.exp(loss), rtol=1e-9)
    assert perplexity[-1] < perplexity[0] < _base_perplexity(config)
    for site in result.per_site:
        assert _history(result.mlflow_run_id, f"site/{site}/perplexity")

    # Only adapters travel: bytes per round are those of the adapters, a small share of the model.
    adapters = load_checkpoint("lora")[1]
    adapter_bytes = len(encode(adapters))
    received = _history(result.mlflow_run_id, "network/bytes_received")
    assert all(4 * adapter_bytes * 0.9 < r < 4 * adapter_bytes * 1.1 for r in received)
    share = _history(result.mlflow_run_id, "network/exchanged_parameter_share")[0]
    assert 0 < share < 0.1

    client = MlflowClient()
    versions = sorted(client.search_model_versions(f"name='{DOMAIN}-global'"), key=lambda v: int(v.version))
    assert [int(v.version) for v in versions] == [1, 2, 3]
    tags = versions[-1].tags
    assert tags["base_model.name"] and len(tags["base_model.sha256"]) == 64
    assert int(tags["base_model.parameters"]) > sum(a.size for a in adapters.values())
    run_tags = mlflow.get_run(result.mlflow_run_id).data.tags
    assert run_tags["base_model.sha256"] == tags["base_model.sha256"]

    # The adapter folder is peft's own format, next to the safetensors the coordinator aggregated.
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{DOMAIN}-global/3"))
    adapter_config = json.loads((local / "artifacts" / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["r"] == 8 and sorted(adapter_config["target_modules"]) == ["q_proj", "v_proj"]
    assert (local / "artifacts" / "adapter" / "adapter_model.safetensors").is_file()

    # And the registered version generates text.
    model = mlflow.pyfunc.load_model(f"models:/{DOMAIN}-global/{result.champion_version}")
    out = model.predict(pd.DataFrame({"prompt": ["To be, or not", "My lord"]}), params={"max_new_tokens": 5})
    assert list(out.columns) == ["generated"] and len(out) == 2
    assert all(isinstance(text, str) and text for text in out["generated"])


@pytest.mark.parametrize(
    "strategy",
    [{"name": "fedprox", "options": {"mu": 0.1}}, {"name": "fedadam", "options": {"server_lr": 0.01}}],
)
def test_fedprox_and_fedadam_fine_tune_adapters(strategy: dict[str, object], language_env: str) -> None:
    config = _config(strategy=strategy)
    result = federated_training(domain=DOMAIN, federation=config, run_name=f"lora-{strategy['name']}")
    assert result.rounds_completed == 2
    assert result.final_metrics["perplexity"] < _base_perplexity(config)


def test_secure_aggregation_of_adapters_gives_the_plain_model(language_env: str) -> None:
    # SGD, not Adam: Adam's first step is about lr * sign(gradient), so the masks' 2^-24 rounding
    # could flip a near-zero gradient's sign and move a weight by a whole step in round 2.
    local = {"optimizer": "sgd", "learning_rate": 0.5, "batch_size": 8, "max_steps": 4}
    plain = federated_training(domain=DOMAIN, federation=_config(local=local), run_name="lora-plain")
    masked = federated_training(
        domain=DOMAIN,
        federation=_config(local=local, secure_aggregation={"enabled": True, "max_dropouts": 1}),
        run_name="lora-masked",
    )
    a, b = load_checkpoint("lora-plain")[1], load_checkpoint("lora-masked")[1]
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-5, err_msg=name)
    assert masked.final_metrics["perplexity"] == pytest.approx(plain.final_metrics["perplexity"], rel=1e-3)


def test_dp_and_compression_apply_to_adapters(language_env: str) -> None:
    private = federated_training(
        domain=DOMAIN,
        federation=_config(privacy={"mode": "central", "clip_norm": 0.5, "noise_multiplier": 0.5}),
        run_name="lora-dp",
    )
    assert private.epsilon is not None and private.epsilon > 0
    compressed = federated_training(
        domain=DOMAIN,
        federation=_config(compression={"codec": "topk", "options": {"fraction": 0.05}}),
        run_name="lora-topk",
    )
    assert min(_history(compressed.mlflow_run_id, "network/uplink_compression")) > 5
    assert np.isfinite(compressed.final_metrics["perplexity"])


def test_scaffold_is_refused_before_any_site_trains(language_env: str) -> None:
    config = _config(
        strategy={"name": "scaffold"}, local={"optimizer": "sgd", "batch_size": 8, "max_steps": 2}
    )
    with pytest.raises(FedflowError, match="task 'language' cannot be combined with strategy 'scaffold'"):
        federated_training(domain=DOMAIN, federation=config, run_name="lora-scaffold")


def test_a_ward_validates_its_notes_folder_before_joining(
    tmp_path: Path, tiny_domains: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from fedflow.cli import app

    monkeypatch.setenv("FEDFLOW_DOMAINS_PATH", str(tiny_domains))
    notes = tmp_path / "ward_7"
    notes.mkdir()
    for index in range(60):
        (notes / f"note_{index:03d}.txt").write_text(
            f"Patient stable on day {index}; continue current plan.\n"
        )
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", DOMAIN, "--data", str(notes), "--site", "ward_7"])
    assert ok.exit_code == 0, ok.output
    (notes / "note_leak.txt").write_text(
        "Family asked to be called on 07700 900 123 or at j.smith@example.org."
    )
    refused = runner.invoke(app, ["validate", DOMAIN, "--data", str(notes), "--site", "ward_7"])
    assert refused.exit_code == 1
    assert "PII guard: email address" in refused.output and "PII guard: phone number" in refused.output
    assert "j.smith" not in refused.output and "07700" not in refused.output


def test_membership_audit_scores_texts_with_the_adapters(language_env: str) -> None:
    result = federated_training(
        domain=DOMAIN, federation=_config(rounds=1, audit=True, audit_shadow_models=2), run_name="lora-audit"
    )
    assert sorted(result.audit) == sorted(result.per_site)
    for scores in result.audit.values():
        assert 0.0 <= scores["mia_loss_auc"] <= 1.0 and 0.0 <= scores["mia_lira_auc"] <= 1.0
