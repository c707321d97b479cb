"""Preprocessing of tabular site data that respects the site boundary.

Each site summarises its own training rows as counts and sums (`site_statistics`); the
coordinator adds the summaries (`merge_statistics`) and derives imputation values, one-hot
vocabularies and scaling from the totals alone (`fit_preprocessor`). No row leaves a site, yet
the result equals what pooled preprocessing would compute.

Outliers: before a value is summed it is clipped to its column's declared range (config.yaml
`min`/`max`), and the sums are float64 with an overflow check, so one planted extreme value
(`1e300`, `inf`) can neither overflow the shared sums nor be read back out of the logged mean:
it moves a column's mean by at most (max - min) / rows. What remains: the mean and standard
deviation are exact functions of the sites' sums, so someone who knows every other row of a
column can still work out the (clipped) value of the last one; and a column that declares no
range is not clipped (validation refuses values too large to sum, `validation/file_checks.py`,
but a large finite one still dominates that column's mean). Declare ranges for every column.
"""

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from fedflow.domain import DomainSpec, NumericColumn
from fedflow.errors import SiteDataError


class UnsafeStatisticsError(SiteDataError, ValueError):
    """A site's sums for a column are not finite: the site is excluded, the others go on."""


class NumericStats(BaseModel):
    """Sufficient statistics of one numeric column: count, sum and sum of squares."""

    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    missing: int = 0


class CategoricalStats(BaseModel):
    """Value counts of one categorical column, and how many rows miss it."""

    counts: dict[str, int] = Field(default_factory=dict)
    missing: int = 0


class SiteStatistics(BaseModel):
    """Aggregates a site shares for preprocessing; no individual value is included."""

    rows: int = 0
    label_counts: dict[str, int] = Field(default_factory=dict, description="Classification: rows per class.")
    numeric: dict[str, NumericStats] = Field(default_factory=dict)
    categorical: dict[str, CategoricalStats] = Field(default_factory=dict)


class NumericTransform(BaseModel):
    """Standardise with the federated mean and sd; impute the mean; flag missing values."""

    name: str
    mean: float
    std: float
    missing_indicator: bool
    log: bool = False
    # The declared range (config.yaml), not the data's: synthetic input examples stay inside it.
    min: float | None = None
    max: float | None = None


class CategoricalTransform(BaseModel):
    """One-hot over the federated vocabulary; unknown or missing values get no hot column."""

    name: str
    categories: list[str]
    missing_indicator: bool


class Preprocessor(BaseModel):
    """Raw site columns -> float features. JSON-serialisable: it ships inside the model."""

    numeric: list[NumericTransform]
    categorical: list[CategoricalTransform]

    @property
    def input_columns(self) -> list[str]:
        """The raw columns `transform` reads."""
        return [n.name for n in self.numeric] + [c.name for c in self.categorical]

    @property
    def feature_names(self) -> list[str]:
        """Names of the output columns, in order."""
        names: list[str] = []
        for num in self.numeric:
            names.append(num.name)
            if num.missing_indicator:
                names.append(f"{num.name}__missing")
        for cat in self.categorical:
            names.extend(f"{cat.name}={value}" for value in cat.categories)
            if cat.missing_indicator:
                names.append(f"{cat.name}__missing")
        return names

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Turn raw columns into a float32 matrix (missing codes must already be NaN)."""
        columns: list[np.ndarray] = []
        missing_columns = [c for c in self.input_columns if c not in frame.columns]
        if missing_columns:
            raise ValueError(f"input lacks the columns {missing_columns}")
        for num in self.numeric:
            values = _numeric(frame[num.name], num.name, log=num.log)
            missing = np.isnan(values)
            columns.append(np.where(missing, 0.0, (values - num.mean) / num.std))
            if num.missing_indicator:
                columns.append(missing.astype(np.float64))
        for cat in self.categorical:
            text = frame[cat.name].astype("string")
            missing = text.isna().to_numpy(dtype=bool)
            for value in cat.categories:
                columns.append((text == value).fillna(False).to_numpy(dtype=np.float64))
            if cat.missing_indicator:
                columns.append(missing.astype(np.float64))
        if not columns:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return np.stack(columns, axis=1).astype(np.float32)


def _numeric(values: pd.Series, name: str, *, log: bool = False) -> np.ndarray:
    """Column as float64 (log1p of it if `log`); text is an error naming the column, not a NaN."""
    try:
        out = pd.to_numeric(values, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (ValueError, TypeError) as error:
        raise ValueError(f"column {name!r} must be numeric: {error}") from error
    # Negative amounts cannot be logged; clip them to zero rather than produce NaN.
    return np.log1p(np.clip(out, 0.0, None)) if log else out


def site_statistics(
    frame: pd.DataFrame, spec: DomainSpec, labels: np.ndarray | None = None
) -> SiteStatistics:
    """Count, sum and sum of squares per numeric column, value counts per categorical one.

    With class `labels`, also the number of rows per class (for class weights and reports).
    """
    stats = SiteStatistics(rows=len(frame))
    if labels is not None:
        classes, class_counts = np.unique(labels.astype(np.int64), return_counts=True)
        stats.label_counts = {str(int(c)): int(n) for c, n in zip(classes, class_counts, strict=True)}
    for column in spec.numeric:
        stats.numeric[column.name] = numeric_statistics(frame[column.name], column)
    for cat_column in spec.categorical:
        raw = frame[cat_column.name]
        counts = raw.dropna().astype(str).value_counts()
        stats.categorical[cat_column.name] = CategoricalStats(
            counts={str(k): int(v) for k, v in counts.items()}, missing=int(raw.isna().sum())
        )
    return stats


def numeric_statistics(values: pd.Series, column: NumericColumn) -> NumericStats:
    """Count, sum and sum of squares of a column, each value clipped to the declared range first.

    Raises `UnsafeStatisticsError` (naming the column, never a value) when a sum is not finite.
    """
    raw = _numeric(values, column.name)
    if column.min is not None or column.max is not None:
        raw = np.clip(raw, column.min, column.max)  # NaN stays NaN: a missing value
    # Negative amounts cannot be logged; clip them to zero rather than produce NaN.
    clipped = np.log1p(np.clip(raw, 0.0, None)) if column.log else raw
    present = clipped[~np.isnan(clipped)]
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(present.sum(dtype=np.float64))
        total_sq = float(np.square(present).sum(dtype=np.float64))
    if not (math.isfinite(total) and math.isfinite(total_sq)):
        raise UnsafeStatisticsError(
            f"column {column.name!r}: its sum or sum of squares is not finite (an infinite or huge "
            "value); correct the value, or declare the column's min and max in config.yaml"
        )
    return NumericStats(
        count=int(present.size), total=total, total_sq=total_sq, missing=int(clipped.size - present.size)
    )


def merge_statistics(parts: Iterable[SiteStatistics]) -> SiteStatistics:
    """Add the sites' statistics column by column."""
    merged = SiteStatistics()
    for part in parts:
        merged.rows += part.rows
        for label, count in part.label_counts.items():
            merged.label_counts[label] = merged.label_counts.get(label, 0) + count
        for name, num in part.numeric.items():
            acc = merged.numeric.setdefault(name, NumericStats())
            acc.count += num.count
            acc.total += num.total
            acc.total_sq += num.total_sq
            acc.missing += num.missing
        for name, cat in part.categorical.items():
            cacc = merged.categorical.setdefault(name, CategoricalStats())
            for value, count in cat.counts.items():
                cacc.counts[value] = cacc.counts.get(value, 0) + count
            cacc.missing += cat.missing
    return merged


def fit_preprocessor(stats: SiteStatistics, spec: DomainSpec, *, min_category_count: int = 5) -> Preprocessor:
    """Derive the preprocessing from federated totals.

    Categories seen fewer than `min_category_count` times across all sites are left out of the
    vocabulary, so that one patient's rare value does not become a column of its own.
    """
    numeric: list[NumericTransform] = []
    for column in spec.numeric:
        num = stats.numeric.get(column.name, NumericStats())
        if num.count == 0:
            mean, std = 0.0, 1.0
        else:
            mean = num.total / num.count
            variance = max(num.total_sq / num.count - mean * mean, 0.0)
            std = math.sqrt(variance) if variance > 1e-12 else 1.0
        numeric.append(
            NumericTransform(
                name=column.name,
                mean=mean,
                std=std,
                missing_indicator=num.missing > 0,
                log=column.log,
                min=column.min,
                max=column.max,
            )
        )
    categorical: list[CategoricalTransform] = []
    for cat_column in spec.categorical:
        cat = stats.categorical.get(cat_column.name, CategoricalStats())
        # Keep the declared order so that the model's input layout does not depend on counts.
        vocabulary = [c for c in cat_column.categories if cat.counts.get(c, 0) >= min_category_count]
        categorical.append(
            CategoricalTransform(
                name=cat_column.name, categories=vocabulary, missing_indicator=cat.missing > 0
            )
        )
    return Preprocessor(numeric=numeric, categorical=categorical)


def example_frame(preprocessor: Preprocessor, rows: int = 2) -> pd.DataFrame:
    """A synthetic frame of raw columns built from federated aggregates, never from real rows.

    Used as MLflow's input example: numeric columns half a standard deviation either side of
    their federated mean, kept inside the declared range, and whole numbers where both declared
    bounds are whole (counts, flags; a whole number is valid there even for a continuous column);
    the first categories of each vocabulary.
    """
    data: dict[str, list[object]] = {}
    for num in preprocessor.numeric:
        values = [num.mean + (i - (rows - 1) / 2) * num.std for i in range(rows)]
        data[num.name] = [_example_value(num, float(np.expm1(v)) if num.log else v) for v in values]
    for cat in preprocessor.categorical:
        vocab = cat.categories or [""]
        data[cat.name] = [vocab[i % len(vocab)] for i in range(rows)]
    return pd.DataFrame(data)


def _example_value(num: NumericTransform, value: float) -> float | int:
    """`value` clipped to the column's declared range, rounded to what the column holds."""
    low = -math.inf if num.min is None else num.min
    high = math.inf if num.max is None else num.max
    clipped = min(max(value, low), high)
    declared = [bound for bound in (num.min, num.max) if bound is not None]
    if declared and all(float(bound).is_integer() for bound in declared):
        return round(clipped)  # whole bounds: a rounded in-range value stays in range
    rounded = round(clipped, 1)
    return min(max(rounded, low), high)  # a bound finer than 0.1 must not be rounded past
