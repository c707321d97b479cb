"""The typed form of a domain's config.yaml: sites, columns, target, task, model, defaults."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fedflow.config import FederationConfig

# What PyYAML's safe_load turns into booleans when written unquoted.
_YAML_BOOLEANS = "yes/no, true/false, on/off (any capitalisation)"


def as_text(value: Any) -> Any:
    """A label written in YAML as text: numbers become their text (`1` -> "1"); booleans are refused.

    A number is unambiguous (the file holds the same digits); a boolean is not (YAML reads an
    unquoted No, no, false or off alike), so it is refused with the hint to quote it.
    """
    if isinstance(value, bool):
        raise ValueError(
            f"found the boolean {str(value).lower()}: YAML reads unquoted {_YAML_BOOLEANS} as booleans; "
            'quote the value as it appears in the file, e.g. "No" or "TRUE"'
        )
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        raise ValueError('found an empty value: write the value, quoted if needed, e.g. "NA"')
    return value


def _as_texts(values: Any) -> Any:
    if not isinstance(values, list):
        return values
    texts = []
    for index, value in enumerate(values):
        try:
            texts.append(as_text(value))
        except ValueError as error:
            raise ValueError(f"item {index}: {error}") from error
    return texts


class NumericColumn(BaseModel):
    """A numeric feature: its plausible range and the codes that mean "not measured"."""

    model_config = ConfigDict(extra="forbid")

    name: str
    min: float | None = None
    max: float | None = None
    missing_codes: list[float] = Field(
        default_factory=list, description="Values recorded instead of a blank when not measured."
    )
    log: bool = Field(default=False, description="Scale log(1 + x) instead of x (amounts, incomes).")
    required: bool = Field(default=False, description="Refuse blanks (and missing codes) in this column.")
    description: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> "NumericColumn":
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}; swap them")
        return self


class CategoricalColumn(BaseModel):
    """A categorical feature and the values it may take."""

    model_config = ConfigDict(extra="forbid")

    name: str
    categories: list[str] = Field(min_length=1)
    required: bool = Field(default=False, description="Refuse blanks in this column.")
    description: str = ""

    @field_validator("categories", mode="before")
    @classmethod
    def _text_categories(cls, values: Any) -> Any:
        return _as_texts(values)


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
    classes: list[str] = Field(default_factory=list, description="Multiclass tasks: the classes, in order.")
    min: float | None = None
    max: float | None = None

    @field_validator("positive_value", mode="before")
    @classmethod
    def _text_positive_value(cls, value: Any) -> Any:
        return None if value is None else as_text(value)

    @field_validator("classes", mode="before")
    @classmethod
    def _text_classes(cls, values: Any) -> Any:
        return _as_texts(values)


class TextSpec(BaseModel):
    """Checks on the text a language site trains on (the target column of a `language` domain)."""

    model_config = ConfigDict(extra="forbid")

    min_chars: int = Field(default=1, ge=1, description="Shortest text allowed, in characters.")
    max_chars: int = Field(default=20_000, ge=1, description="Longest text allowed, in characters.")
    pii_guard: bool = Field(
        default=True,
        description="Refuse texts with e-mail addresses, phone numbers or national-ID-like numbers.",
    )


class QualitySpec(BaseModel):
    """Data-quality thresholds a site must meet before it trains."""

    model_config = ConfigDict(extra="forbid")

    min_rows: int = Field(default=20, ge=1)
    min_rows_per_class: int = Field(default=0, ge=0)


class PartitionSpec(BaseModel):
    """Simulated sites cut from one table (experiments; real sites have one file each)."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="The table to partition, relative to config.yaml.")
    method: Literal["iid", "dirichlet", "natural"]
    num_sites: int | None = Field(default=None, ge=1, description="iid and dirichlet: how many sites.")
    alpha: float | None = Field(default=None, gt=0, description="dirichlet: concentration (small = skewed).")
    column: str | None = Field(default=None, description="natural: the column that defines sites.")
    groups: dict[str, list[str | int]] | None = Field(
        default=None, description="natural: site name -> the column values it holds."
    )
    num_groups: int | None = Field(default=None, ge=1, description="natural: cut sorted values into groups.")
    min_rows: int = Field(default=10, ge=1, description="dirichlet: redraw until every site has this many.")
    seed: int = Field(default=0, ge=0, description="Seed of the partition (fixed: sites must not move).")

    @model_validator(mode="after")
    def _complete(self) -> "PartitionSpec":
        if self.method in ("iid", "dirichlet") and self.num_sites is None:
            raise ValueError(f"partition method {self.method!r} needs num_sites")
        if self.method == "dirichlet" and self.alpha is None:
            raise ValueError("partition method 'dirichlet' needs alpha")
        if self.method == "natural" and (
            self.column is None or (self.groups is None) == (self.num_groups is None)
        ):
            raise ValueError(
                "partition method 'natural' needs a column and exactly one of groups or num_groups"
            )
        return self

    def site_names(self) -> list[str]:
        """The simulated sites' names, known without reading the data."""
        if self.method == "natural":
            if self.groups is not None:
                return list(self.groups)
            return [f"{self.column}_group_{i}" for i in range(self.num_groups or 0)]
        return [f"site_{i}" for i in range(self.num_sites or 0)]


class DomainSpec(BaseModel):
    """A whole domain template as declared in its config.yaml."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    task: str = Field(default="binary", description="A task kind from `fedflow.tasks.TASKS`.")
    target: TargetSpec
    numeric: list[NumericColumn] = Field(default_factory=list)
    categorical: list[CategoricalColumn] = Field(default_factory=list)
    sites: dict[str, str] = Field(
        default_factory=dict, description="Site name -> data file, relative to config.yaml."
    )
    partition: PartitionSpec | None = Field(
        default=None, description="Instead of `sites`: simulated sites cut from one table."
    )
    model: dict[str, Any] = Field(default_factory=dict, description="Keyword options of build_model.")
    champion_metric: str | None = Field(default=None, description="Ranks versions; default per task.")
    quality: QualitySpec = Field(default_factory=QualitySpec)
    text: TextSpec = Field(default_factory=TextSpec, description="Language tasks: checks on the texts.")
    federation: FederationConfig = Field(default_factory=FederationConfig)

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        from fedflow.tasks import TASKS  # the task kinds import this module

        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
        return task

    @model_validator(mode="after")
    def _consistent(self) -> "DomainSpec":
        from fedflow.compatibility import compatibility_problems
        from fedflow.tasks import get_task

        names = [c.name for c in self.numeric] + [c.name for c in self.categorical]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"columns declared twice: {duplicates}")
        if self.target.column in names:
            raise ValueError(f"target column {self.target.column!r} is also declared as a feature")
        if bool(self.sites) == (self.partition is not None):
            raise ValueError("declare either `sites` (one file per site) or `partition`, not both or neither")
        task = get_task(self.task)
        problems = task.spec_problems(self) + compatibility_problems(self.federation, task)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def site_names(self) -> list[str]:
        """Every site of the domain, real or simulated."""
        return self.partition.site_names() if self.partition is not None else list(self.sites)

    @property
    def feature_columns(self) -> list[str]:
        """Feature column names, numeric first."""
        return [c.name for c in self.numeric] + [c.name for c in self.categorical]

    @property
    def input_columns(self) -> list[str]:
        """Columns a site file must have: the features and the target."""
        return [*self.feature_columns, self.target.column]
