"""Config is parsed once at the edge, and bad config says what and where."""

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from domains import DOMAINS_ROOT, available_domains, load_domain
from fedflow.config import FederationConfig
from fedflow.errors import ConfigError, DomainError


def test_unknown_strategy_lists_the_registered_ones() -> None:
    with pytest.raises(ValidationError, match="fedavg"):
        FederationConfig.model_validate({"strategy": {"name": "fedmagic"}})


def test_round_minimum_below_min_sites_is_refused() -> None:
    with pytest.raises(ValidationError, match="min_sites_per_round"):
        FederationConfig(min_sites=3, min_sites_per_round=2)


def test_flat_params_are_dotted() -> None:
    flat = FederationConfig().flat()
    assert flat["local.learning_rate"] == 0.05 and flat["strategy.name"] == "fedavg"


def test_healthcare_is_discovered() -> None:
    assert "healthcare" in available_domains()
    domain = load_domain("healthcare")
    assert sorted(domain.spec.sites) == ["cleveland", "hungary", "switzerland", "va_long_beach"]


def test_a_broken_domain_config_names_the_file_and_field(tmp_path: Path) -> None:
    shutil.copytree(DOMAINS_ROOT / "healthcare", tmp_path / "healthcare")
    config = tmp_path / "healthcare" / "config.yaml"
    config.write_text(config.read_text().replace("task: binary", "task: telepathy"))
    with pytest.raises(DomainError, match=r"config\.yaml is invalid[\s\S]*task"):
        load_domain("healthcare", root=tmp_path)
    config.write_text("name: [unclosed")
    with pytest.raises(DomainError, match="not valid YAML"):
        load_domain("healthcare", root=tmp_path)


def test_unknown_domain_lists_the_available_ones() -> None:
    with pytest.raises(DomainError, match="healthcare"):
        load_domain("astrology")


def test_overrides_set_dotted_keys_and_validate_the_whole() -> None:
    base = FederationConfig()
    config = base.with_overrides({"local.epochs": 2, "strategy.name": "fedprox", "strategy.options.mu": 0.1})
    assert config.local.epochs == 2 and config.strategy.options == {"mu": 0.1}
    assert base.local.epochs == 1  # the base is left as it was
    assert FederationConfig.with_overrides(base, {"rounds": 3}).rounds == 3  # also callable on the class


def test_changing_a_variant_drops_its_options_and_keeping_it_merges_them() -> None:
    prox = FederationConfig().with_overrides({"strategy.name": "fedprox", "strategy.options.mu": 0.5})
    assert prox.with_overrides({"strategy.name": "fedavgm"}).strategy.options == {}
    assert prox.with_overrides({"strategy.name": "fedprox"}).strategy.options == {"mu": 0.5}
    merged = prox.with_overrides({"strategy.options.weighting": "uniform"}).strategy.options
    assert merged == {"mu": 0.5, "weighting": "uniform"}
    topk = FederationConfig().with_overrides(
        {"compression.codec": "topk", "compression.options.fraction": 0.1}
    )
    assert topk.with_overrides({"compression.codec": "int8"}).compression.options == {}
    assert topk.with_overrides({"compression.options.values": "float32"}).compression.options == {
        "fraction": 0.1,
        "values": "float32",
    }


def test_raising_min_sites_raises_the_round_minimum_unless_it_is_given() -> None:
    base = FederationConfig(min_sites_per_round=4)
    assert base.with_overrides({"min_sites": 3}).min_sites_per_round == 4
    assert base.with_overrides({"min_sites": 6}).min_sites_per_round == 6
    assert base.with_overrides({"min_sites": 3, "min_sites_per_round": 3}).min_sites_per_round == 3
    with pytest.raises(ConfigError, match=r"min_sites_per_round \(5\) is below min_sites \(6\)"):
        base.with_overrides({"min_sites": 6, "min_sites_per_round": 5})


def test_a_deployment_that_sets_min_sites_alone_gets_the_same_rule() -> None:
    # A flow or deployment parameter is validated by FederationConfig itself, without with_overrides.
    assert FederationConfig.model_validate({"min_sites": 5}).min_sites_per_round == 5
    assert FederationConfig.model_validate({"min_sites": 1}).min_sites_per_round == 2
    assert (
        FederationConfig.model_validate({"min_sites": 3, "min_sites_per_round": 4}).min_sites_per_round == 4
    )


def test_an_optional_section_is_turned_on_by_its_keys_and_off_by_null() -> None:
    on = FederationConfig().with_overrides({"local.dp_sgd.noise_multiplier": 1.5})
    assert on.local.dp_sgd is not None and on.local.dp_sgd.noise_multiplier == 1.5
    assert on.local.dp_sgd.max_grad_norm == 1.0
    assert on.with_overrides({"local.dp_sgd": None}).local.dp_sgd is None


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        (
            {"local.epoch": 2},
            r"unknown key 'local\.epoch'; valid keys in local: local\.batch_size, .*local\.epochs",
        ),
        ({"locl.epochs": 2}, r"unknown key 'locl\.epochs'; valid keys: attack, audit, .*local, "),
        ({"rounds.every": 2}, r"unknown key 'rounds\.every': rounds is a value, not a section"),
        ({"local.epochs": 0}, r"^local\.epochs: Input should be greater than or equal to 1$"),
        ({"privacy.mode": "loud"}, r"^privacy\.mode: Input should be 'off', 'central' or 'distributed'$"),
        ({"strategy.options.nu": 1}, r"^strategy: strategy 'fedavg' does not accept options \{'nu': 1\}"),
        ({"secure_aggregation.enabled": True, "strategy.name": "krum"}, r"^secure aggregation cannot be"),
    ],
)
def test_a_bad_override_names_its_key(overrides: dict[str, object], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        FederationConfig().with_overrides(overrides)


def test_overrides_are_checked_against_the_domains_task() -> None:
    from fedflow.tasks import get_task

    language = get_task("language")
    with pytest.raises(ConfigError, match="task 'language' cannot be combined with attack 'label_flip'"):
        FederationConfig().with_overrides({"attack.kind": "label_flip", "attack.sites": ["a"]}, task=language)
    assert FederationConfig().with_overrides({"attack.kind": "label_flip", "attack.sites": ["a"]}).attack
