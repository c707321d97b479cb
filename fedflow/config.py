"""Typed configuration of a federation, parsed once at the edge (CLI, flow parameters)."""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fedflow.attacks import AttackConfig
from fedflow.dotted_keys import check_key, set_key
from fedflow.errors import ConfigError, validation_messages

if TYPE_CHECKING:
    from fedflow.tasks import TaskKind


class DPSGDConfig(BaseModel):
    """Example-level DP-SGD inside every site (Opacus): per-example clipping and noise."""

    model_config = ConfigDict(extra="forbid")

    noise_multiplier: float = Field(default=1.0, gt=0, description="Noise sd / max_grad_norm.")
    max_grad_norm: float = Field(default=1.0, gt=0, description="Per-example gradient clipping bound.")
    delta: float = Field(default=1e-5, gt=0, lt=1, description="The delta of each site's (epsilon, delta).")


class LocalTrainConfig(BaseModel):
    """How each site trains the global model on its own rows in one round."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=1, ge=1, description="Passes over the site's training rows per round.")
    batch_size: int = Field(default=32, ge=1, description="Rows per optimisation step.")
    max_steps: int | None = Field(
        default=None, ge=1, description="Train exactly this many steps per round instead of `epochs` passes."
    )
    learning_rate: float = Field(default=0.05, gt=0, description="Step size of the local optimiser.")
    optimizer: Literal["sgd", "adam"] = Field(default="sgd", description="Local optimiser.")
    momentum: float = Field(default=0.9, ge=0, lt=1, description="SGD momentum (ignored by Adam).")
    weight_decay: float = Field(default=0.0, ge=0, description="L2 penalty of the local optimiser.")
    dp_sgd: DPSGDConfig | None = Field(
        default=None, description="Example-level DP-SGD at every site (None: off)."
    )
    class_weighting: Literal["none", "balanced"] = Field(
        default="none",
        description="Classification: weight classes by n / (k * n_class) from federated label counts.",
    )


class StrategyConfig(BaseModel):
    """Which aggregation strategy the coordinator uses, and its keyword arguments."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="fedavg", description="A name from `fedflow.strategies.STRATEGIES`.")
    options: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="Keyword arguments of the strategy."
    )

    @field_validator("name")
    @classmethod
    def _known_strategy(cls, name: str) -> str:
        from fedflow.strategies import STRATEGIES

        key = name.lower()
        if key not in STRATEGIES:
            raise ValueError(f"unknown strategy {name!r}; choose one of {sorted(STRATEGIES)}")
        return key

    @model_validator(mode="after")
    def _options_fit(self) -> "StrategyConfig":
        from fedflow.strategies import build_strategy

        build_strategy(self.name, self.options)  # unknown options or bad values fail here, not mid-run
        return self

    def resolved_options(self) -> dict[str, Any]:
        """Every option the strategy runs with: its declared defaults, overridden by `options`."""
        from fedflow.option_defaults import resolved_options
        from fedflow.strategies import STRATEGIES

        return resolved_options(STRATEGIES[self.name], self.options)


class UpdateChecks(BaseModel):
    """Checks the coordinator applies to every update before aggregating (a failing one is dropped)."""

    model_config = ConfigDict(extra="forbid")

    max_payload_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1, description="Refuse larger payloads before decoding them."
    )
    max_update_norm: float | None = Field(
        default=None, gt=0, description="Drop updates whose delta has a larger L2 norm (None: no bound)."
    )


class AuthConfig(BaseModel):
    """Whether every message is signed: requests by the coordinator, replies by their site."""

    model_config = ConfigDict(extra="forbid")

    required: bool = Field(
        default=False,
        description="Sign every request with coordinator.key and accept only replies signed by their "
        "site's registered key for that very call; a site that cannot authenticate is excluded at "
        "preparation.",
    )
    keys_dir: str | None = Field(
        default=None,
        description="The coordinator's key folder: coordinator.key and every site's `<site>.pub` (in "
        "simulation the sites' `<site>.key` and coordinator.pub too); default FEDFLOW_KEYS_DIR or "
        "./.fedflow/keys.",
    )


class PrivacyConfig(BaseModel):
    """Client-level differential privacy (DP-FedAvg): clip every site's delta, add Gaussian noise."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["off", "central", "distributed"] = Field(
        default="off",
        description="central: the coordinator adds the noise; distributed: each site adds its share.",
    )
    clip_norm: float = Field(default=1.0, gt=0, description="C: the L2 bound of every site's delta.")
    noise_multiplier: float = Field(default=1.0, gt=0, description="sigma: noise sd on the sum is sigma * C.")
    delta: float = Field(default=1e-5, gt=0, lt=1, description="The delta of (epsilon, delta).")
    target_epsilon: float | None = Field(
        default=None, gt=0, description="End the run cleanly before a round would spend more than this."
    )
    reproducible_noise: bool = Field(
        default=False,
        description="Experiments only: draw every DP noise (central, distributed, DP-SGD) from the "
        "federation's seed, so anyone who knows the seed can remove it. Off: each party's secret key. "
        "Refused in cross-silo runs and by served sites.",
    )


class CompressionConfig(BaseModel):
    """The uplink codec: how sites compress their deltas (see fedflow.compression)."""

    model_config = ConfigDict(extra="forbid")

    codec: str = Field(default="none", description="none, fp16, int8 or topk.")
    options: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="Codec options, e.g. topk: fraction, values, error_feedback."
    )

    @model_validator(mode="after")
    def _options_fit(self) -> "CompressionConfig":
        from fedflow.compression import build_codec

        build_codec(self.codec, self.options)
        return self

    def resolved_options(self) -> dict[str, Any]:
        """Every option the codec runs with: its declared defaults, overridden by `options`."""
        from fedflow.compression import CODECS
        from fedflow.option_defaults import resolved_options

        return resolved_options(CODECS[self.codec], self.options)


class SecureAggregationConfig(BaseModel):
    """Secure aggregation (Bonawitz et al. 2017): the coordinator sees only the sum of the updates."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="Mask every update so that only their sum is revealed.")
    max_dropouts: int = Field(
        default=1,
        ge=0,
        description="Sites that may drop after masking with the round still recovering the sum "
        "(the Shamir threshold is the round's sites minus this, never below a strict majority).",
    )
    fraction_bits: int = Field(
        default=24, ge=8, le=40, description="Fixed-point precision of the masked values (2^-bits)."
    )


def round_minimum(min_sites_per_round: int, min_sites: Any) -> int:
    """The round minimum raised to `min_sites` (when that is a whole number: else validation says so)."""
    if isinstance(min_sites, int) and not isinstance(min_sites, bool):
        return max(min_sites_per_round, min_sites)
    return min_sites_per_round


# Sections whose options belong to the variant they name: a new variant starts from its own defaults.
VARIANT_SECTIONS = {"strategy": "name", "compression": "codec"}


class FederationConfig(BaseModel):
    """Everything that decides what a federation run computes (logged as MLflow params)."""

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(default=20, ge=1, description="Number of federated rounds.")
    sites_fraction: float = Field(
        default=1.0, gt=0, le=1, description="Fraction of the eligible sites sampled each round."
    )
    min_sites_per_round: int = Field(
        default=2, ge=1, description="Sample at least this many sites per round (if available)."
    )
    min_sites: int = Field(
        default=2,
        ge=1,
        description="Stop the run when fewer sites than this pass validation or report in a round.",
    )
    max_missed_calls: int = Field(
        default=3,
        ge=1,
        description="A site that misses this many calls in a row (unreachable, stopped, timed out) is left "
        "out of the federation (not sampled, not in the global metrics); it rejoins when it answers again "
        "(every round's evaluation asks it).",
    )
    holdout_fraction: float = Field(
        default=0.25,
        ge=0,
        lt=1,
        description="Share of each site's rows kept for its hold-out; 0 trains on every row and skips "
        "federated evaluation and the audit (evaluate the registered models elsewhere).",
    )
    seed: int = Field(default=0, ge=0, description="Seeds the split, the sampling and training.")
    local: LocalTrainConfig = Field(default_factory=LocalTrainConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    checks: UpdateChecks = Field(default_factory=UpdateChecks)
    authentication: AuthConfig = Field(default_factory=AuthConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    secure_aggregation: SecureAggregationConfig = Field(default_factory=SecureAggregationConfig)
    compression: CompressionConfig = Field(default_factory=CompressionConfig)

    attack: AttackConfig | None = Field(
        default=None, description="Simulation only: sites that misbehave, for robustness experiments."
    )
    audit: bool = Field(
        default=True,
        description="After training, each site runs membership-inference attacks on the final model "
        "(its training rows against its hold-out) and reports the attack AUC and TPR at 1 % FPR.",
    )
    audit_shadow_models: int = Field(
        default=8,
        ge=0,
        description="Shadow models each site trains for the likelihood-ratio (LiRA) attack of the audit "
        "(even; 0 runs only the loss-based attacks).",
    )
    personalization_steps: int = Field(
        default=0,
        ge=0,
        description="If > 0, each site also fine-tunes the global model this many local steps "
        "and reports `personalised/...` metrics on its hold-out.",
    )

    @model_validator(mode="before")
    @classmethod
    def _round_minimum_follows_min_sites(cls, data: Any) -> Any:
        # A deployment that raises min_sites alone means "at least that many per round" too.
        if isinstance(data, Mapping) and "min_sites" in data and "min_sites_per_round" not in data:
            default = cls.model_fields["min_sites_per_round"].default
            return {**data, "min_sites_per_round": round_minimum(default, data["min_sites"])}
        return data

    @model_validator(mode="after")
    def _parts_fit_together(self) -> "FederationConfig":
        from fedflow.compatibility import compatibility_problems  # it reads the variants' declarations

        problems = compatibility_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("audit_shadow_models")
    @classmethod
    def _even_shadows(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"audit_shadow_models must be even (each row is IN half of them), got {value}")
        return value

    @model_validator(mode="after")
    def _round_minimum_fits(self) -> "FederationConfig":
        if self.min_sites_per_round < self.min_sites:
            raise ValueError(
                f"min_sites_per_round ({self.min_sites_per_round}) is below min_sites "
                f"({self.min_sites}): every round would stop the run; raise min_sites_per_round"
            )
        return self

    def with_overrides(
        self, overrides: Mapping[str, Any], *, task: "TaskKind | None" = None
    ) -> "FederationConfig":
        """This config with dotted `section.key` values replaced, validated as a whole (ConfigError).

        Changing `strategy.name` or `compression.codec` drops the old variant's options (options
        given with it are kept); raising `min_sites` raises `min_sites_per_round` unless that is
        given too. With the domain's `task`, the combinations it refuses are refused as well.
        """
        for key in overrides:
            check_key(FederationConfig, key)
        data = self.model_dump()
        for section, name in VARIANT_SECTIONS.items():
            chosen = overrides.get(f"{section}.{name}")
            if chosen is not None and str(chosen).lower() != str(data[section][name]).lower():
                data[section]["options"] = {}
        if "min_sites" in overrides and "min_sites_per_round" not in overrides:
            data["min_sites_per_round"] = round_minimum(data["min_sites_per_round"], overrides["min_sites"])
        for key, value in overrides.items():
            set_key(data, key, value)
        try:
            config = FederationConfig.model_validate(data)
        except ValidationError as error:
            raise ConfigError("; ".join(validation_messages(error))) from error
        from fedflow.compatibility import compatibility_problems

        problems = compatibility_problems(config, task) if task is not None else []
        if problems:
            raise ConfigError("; ".join(problems))
        return config

    def flat(self) -> dict[str, str | int | float | bool]:
        """The config as flat `section.key` pairs, for MLflow params: every option with its resolved value.

        A variant's options left at their defaults are absent from `options`; they are filled in from
        the variant's declaration (`strategy.options.mu=0.01` for FedProx when no `mu` was given).
        """
        out: dict[str, str | int | float | bool] = {}

        def walk(prefix: str, value: object) -> None:
            if isinstance(value, dict):
                for key, inner in value.items():
                    walk(f"{prefix}.{key}" if prefix else str(key), inner)
            else:
                out[prefix] = value  # type: ignore[assignment]

        data = self.model_dump()
        data["strategy"]["options"] = self.strategy.resolved_options()
        data["compression"]["options"] = self.compression.resolved_options()
        walk("", data)
        return out
