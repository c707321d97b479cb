"""One compatibility check: every variant declares capabilities, every refusal is derived from them.

Contract tests run over the strategy, codec and task registries, so a new variant gets them for
free; the refused pairs are exactly today's rules; the CLI, the flow's parameters (a deployment's
too) and a domain's config.yaml give the same message for the same bad combination.
"""

import itertools

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

import fedflow.capabilities as vocabulary
from domains import load_domain
from fedflow.capabilities import Refusal
from fedflow.cli import app
from fedflow.compatibility import (
    ATTACK,
    OPTIMIZER,
    STRATEGY,
    VARIANTS,
    Component,
    compatibility_problems,
    components,
    pair_problems,
    task_component,
)
from fedflow.compression import CODECS, build_codec
from fedflow.config import (
    CompressionConfig,
    DPSGDConfig,
    FederationConfig,
    LocalTrainConfig,
    PrivacyConfig,
    SecureAggregationConfig,
    StrategyConfig,
    UpdateChecks,
)
from fedflow.domain import DomainSpec
from fedflow.strategies import STRATEGIES, build_strategy
from fedflow.tasks import TASKS, get_task

CAPABILITIES = {
    value for name, value in vars(vocabulary).items() if name.isupper() and isinstance(value, str)
}


def _declares(variant: object) -> None:
    capabilities = variant.capabilities  # type: ignore[attr-defined]
    refuses = variant.refuses  # type: ignore[attr-defined]
    assert isinstance(capabilities, frozenset) and capabilities <= CAPABILITIES
    assert isinstance(refuses, tuple)
    for refusal in refuses:
        assert isinstance(refusal, Refusal) and refusal.capability in CAPABILITIES and refusal.reason


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_declares_its_capabilities(name: str) -> None:
    _declares(build_strategy(name))
    assert VARIANTS[STRATEGY]()[name].label == f"strategy {name!r}"


@pytest.mark.parametrize("name", sorted(CODECS))
def test_every_codec_declares_its_capabilities(name: str) -> None:
    codec = build_codec(name)
    _declares(codec)
    # Only the identity sends every value at full precision (what secure aggregation's masks need).
    assert (vocabulary.DENSE_UPDATES in codec.capabilities) == (name == "none")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_kind_declares_its_capabilities(name: str) -> None:
    _declares(get_task(name))
    assert task_component(get_task(name)).label == f"task {name!r}"


def test_every_optimizer_and_attack_kind_is_declared() -> None:
    from typing import get_args

    from fedflow.attacks import AttackKind

    assert set(VARIANTS[OPTIMIZER]()) == set(get_args(LocalTrainConfig.model_fields["optimizer"].annotation))
    assert set(VARIANTS[ATTACK]()) == set(get_args(AttackKind))


def _switched_on() -> list[Component]:
    """The parts that are not registered variants: privacy modes, secure aggregation, checks, options."""
    everything = FederationConfig.model_construct(
        strategy=StrategyConfig(),
        compression=CompressionConfig(),
        local=LocalTrainConfig(dp_sgd=DPSGDConfig(), max_steps=5),
        privacy=PrivacyConfig(mode="central"),
        secure_aggregation=SecureAggregationConfig(enabled=True),
        checks=UpdateChecks(max_update_norm=1.0),
        attack=None,
    )
    return [part for part in components(everything) if part.kind not in VARIANTS]


def _universe() -> list[Component]:
    variants = [part for kind in VARIANTS.values() for part in kind().values()]
    return [*variants, *(task_component(task) for task in TASKS.values()), *_switched_on()]


def test_every_part_a_config_can_turn_on_is_in_the_universe() -> None:
    labels = {part.label for part in _switched_on()}
    assert labels == {
        "local.max_steps",
        "local.dp_sgd",
        "differential privacy",
        "secure aggregation",
        "checks.max_update_norm",
    }
    for part in _switched_on():
        _declares(part)
        assert all(need.capability in CAPABILITIES and need.kind in VARIANTS for need in part.requires)


def test_every_refusal_names_both_sides_and_says_why() -> None:
    for holder, other in itertools.permutations(_universe(), 2):
        for problem in pair_problems(holder, other):
            first, second = (holder, other) if problem.startswith(holder.label) else (other, holder)
            assert problem.startswith(f"{first.label} cannot be combined with {second.label}: "), problem
            assert len(problem) > len(f"{first.label} cannot be combined with {second.label}: ") + 10


ROBUST = ["fedmedian", "fedtrimmedmean", "krum", "multikrum"]
# Today's rules, as pairs of labels: the declarations must derive exactly these, no more, no fewer.
REFUSED = {
    *(("differential privacy", f"strategy {name!r}") for name in [*ROBUST, "scaffold"]),
    *(("secure aggregation", f"strategy {name!r}") for name in [*ROBUST, "scaffold"]),
    *(("secure aggregation", f"compression codec {name!r}") for name in ["fp16", "int8", "topk"]),
    ("secure aggregation", "checks.max_update_norm"),
    ("local.dp_sgd", "strategy 'scaffold'"),
    ("local.dp_sgd", "strategy 'fedprox'"),
    ("local.dp_sgd", "local.max_steps"),
    ("strategy 'scaffold'", "local.optimizer 'adam'"),
    ("task 'language'", "local.dp_sgd"),
    ("task 'language'", "attack 'label_flip'"),
    ("task 'language'", "strategy 'scaffold'"),
}


def test_the_declarations_derive_exactly_todays_refusals() -> None:
    refused = {
        frozenset((holder.label, other.label))
        for holder, other in itertools.permutations(_universe(), 2)
        if pair_problems(holder, other)
    }
    assert refused == {frozenset(pair) for pair in REFUSED}


def test_suggestions_are_the_variants_that_would_be_accepted() -> None:
    problems = compatibility_problems(
        FederationConfig.model_construct(
            strategy=StrategyConfig(name="krum"),
            compression=CompressionConfig(),
            local=LocalTrainConfig(),
            privacy=PrivacyConfig(mode="distributed"),
            secure_aggregation=SecureAggregationConfig(),
            checks=UpdateChecks(),
            attack=None,
        )
    )
    averaging = ["fedadagrad", "fedadam", "fedavg", "fedavgm", "fedprox", "fedyogi"]
    assert problems == [
        "differential privacy cannot be combined with strategy 'krum': its rule looks at individual "
        f"updates; noise calibrated for the mean does not bound it; use one of {averaging}"
    ]


def test_the_config_refuses_every_problem_at_once() -> None:
    with pytest.raises(ValidationError) as refused:
        FederationConfig.model_validate(
            {
                "strategy": {"name": "fedmedian"},
                "compression": {"codec": "topk"},
                "secure_aggregation": {"enabled": True},
            }
        )
    message = str(refused.value)
    assert "secure aggregation cannot be combined with strategy 'fedmedian'" in message
    assert "compression codec 'topk' cannot be combined with secure aggregation" in message
    assert "use one of ['none']" in message


def _message(error: ValidationError) -> str:
    [problem] = error.errors()
    return str(problem["msg"]).removeprefix("Value error, ")


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_flow_parameters_a_domain_and_the_cli_give_the_same_message() -> None:
    federation = {"strategy": {"name": "fedmedian"}, "secure_aggregation": {"enabled": True}}
    with pytest.raises(ValidationError) as by_parameters:  # the flow's parameter (and a deployment's)
        FederationConfig.model_validate(federation)
    message = _message(by_parameters.value)
    spec = load_domain("healthcare").spec.model_dump()
    with pytest.raises(ValidationError) as by_domain:  # a domain's config.yaml
        DomainSpec.model_validate({**spec, "federation": federation})
    assert _message(by_domain.value) == message
    by_flags = CliRunner().invoke(
        app, ["run", "healthcare", "--secure-aggregation", "--strategy", "fedmedian"]
    )
    assert by_flags.exit_code == 2 and _flat(message) in _flat(by_flags.output)
    by_keys = CliRunner().invoke(
        app, ["run", "healthcare", "-c", "secure_aggregation.enabled=true", "-c", "strategy.name=fedmedian"]
    )
    assert by_keys.exit_code == 2 and _flat(message) in _flat(by_keys.output)


def test_a_task_kinds_refusal_reads_the_same_from_a_domain_the_flow_and_the_cli() -> None:
    federation = {"strategy": {"name": "scaffold"}, "local": {"optimizer": "sgd"}}
    spec = load_domain("language").spec.model_dump()
    with pytest.raises(ValidationError) as by_domain:
        DomainSpec.model_validate({**spec, "federation": federation})
    message = _message(by_domain.value)
    assert message.startswith("task 'language' cannot be combined with strategy 'scaffold': ")
    # The flow checks its parameter against the domain's task kind with the same function.
    assert compatibility_problems(FederationConfig.model_validate(federation), get_task("language")) == [
        message
    ]
    by_cli = CliRunner().invoke(app, ["run", "language", "--strategy", "scaffold", "--optimizer", "sgd"])
    assert by_cli.exit_code == 2 and _flat(message) in _flat(by_cli.output)
