"""The typed form of a domain's config.yaml: sites, columns, target, task, model, defaults."""

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fedflow.config import FederationConfig
from fedflow.errors import DomainError
from fedflow.yamlfile import read_yaml_mapping


class NumericColumn(BaseModel):
    """A numeric feature: its plausible range and the codes that mean "not measured"."""

    model_config = ConfigDict(extra="forbid")

    name: str
    min: float | None = None
    max: float | None = None
    missing_codes: list[float] = Field(
        default_factory=list, description="Values recorded instead of a blank when not measured."
    )
    description: str = ""


class CategoricalColumn(BaseModel):
    """A categorical feature and the values it may take."""

    model_config = ConfigDict(extra="forbid")

    name: str
    categories: list[str]
    description: str = ""


class TargetSpec(BaseModel):
    """The label column and how a binary label is derived from it."""

    model_config = ConfigDict(extra="forbid")

    column: str
    positive_above: float | None = Field(
        default=None, description="Binary tasks: the label is 1 when the column exceeds this."
    )
    positive_value: str | None = Field(
        default=None, description="Binary tasks: the label is 1 when the column equals this."
    )
    min: float | None = None
    max: float | None = None


class QualitySpec(BaseModel):
    """Data-quality thresholds a site must meet before it trains."""

    model_config = ConfigDict(extra="forbid")

    min_rows: int = Field(default=20, ge=1)
    min_rows_per_class: int = Field(default=0, ge=0)


class DomainSpec(BaseModel):
    """A whole domain template as declared in its config.yaml."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    task: Literal["binary"] = "binary"
    target: TargetSpec
    numeric: list[NumericColumn] = Field(default_factory=list)
    categorical: list[CategoricalColumn] = Field(default_factory=list)
    sites: dict[str, str] = Field(description="Site name -> data file, relative to config.yaml.")
    model: dict[str, Any] = Field(default_factory=dict, description="Keyword options of build_model.")
    champion_metric: str = "roc_auc"
    quality: QualitySpec = Field(default_factory=QualitySpec)
    federation: FederationConfig = Field(default_factory=FederationConfig)

    @model_validator(mode="after")
    def _consistent(self) -> "DomainSpec":
        names = [c.name for c in self.numeric] + [c.name for c in self.categorical]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"columns declared twice: {duplicates}")
        if self.target.column in names:
            raise ValueError(f"target column {self.target.column!r} is also declared as a feature")
        if not self.sites:
            raise ValueError("declare at least one site under `sites`")
        if self.task == "binary" and (self.target.positive_above is None) == (
            self.target.positive_value is None
        ):
            raise ValueError("a binary target needs exactly one of positive_above or positive_value")
        return self

    @property
    def feature_columns(self) -> list[str]:
        """Feature column names, numeric first."""
        return [c.name for c in self.numeric] + [c.name for c in self.categorical]

    @property
    def input_columns(self) -> list[str]:
        """Columns a site file must have: the features and the target."""
        return [*self.feature_columns, self.target.column]


def load_domain_spec(config_path: Path) -> DomainSpec:
    """Parse a domain's config.yaml, naming the file and the field on error."""
    raw = read_yaml_mapping(config_path, what="domain config", error=DomainError)
    try:
        return DomainSpec.model_validate(raw)
    except ValidationError as error:
        raise DomainError(f"{config_path} is invalid:\n{error}") from error
