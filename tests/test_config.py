"""Config is parsed once at the edge, and bad config says what and where."""

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from domains import DOMAINS_ROOT, available_domains, load_domain
from fedflow.config import FederationConfig
from fedflow.errors import DomainError


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
