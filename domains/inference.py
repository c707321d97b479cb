"""Guess a domain's columns and task from one site's file, as a draft for a person to confirm.

Pure functions over a frame read as text: which columns are numeric or categorical, their
plausible ranges (widened and rounded outward, so they never reveal this file's own extremes),
their categories, the codes that stand for "not measured", and the task kind from the target.
Every guess carries a reason, written next to it in the drafted config.yaml.
"""

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fedflow.errors import DomainError

# Text that pandas (and so every site's reader) already reads as a blank.
BLANKS = frozenset(
    {"", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "#N/A", "<NA>", "-NaN", "-nan"}
)
MAX_CATEGORIES = 30  # more distinct texts than this: free text or an identifier, not a category
MAX_CLASSES = 20  # text targets with at most this many values are classes
MARGIN = 1.0  # ranges grow by this share of their size on each side before rounding outward
_ID_NAME = re.compile(r"(^|[_\s.-])(id|uuid|guid|key|index)$|^(id|uuid|guid|index)([_\s.-]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class ColumnGuess:
    """What one column looks like: kind ('numeric', 'categorical' or 'skip') and why."""

    name: str
    kind: str
    reason: str
    min: float | None = None
    max: float | None = None
    missing_codes: list[float] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TargetGuess:
    """The task kind and the target's label rule."""

    column: str
    task: str
    reason: str
    positive_above: float | None = None
    positive_value: str | None = None
    classes: list[str] = field(default_factory=list)
    min: float | None = None
    max: float | None = None


def read_as_text(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file with every cell as stripped text (blanks kept as written)."""
    if path.is_dir() or not path.is_file():
        found = "a folder" if path.is_dir() else "nothing"
        raise DomainError(f"--infer {path}: expected a CSV or Parquet file, found {found}")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path).astype("string").fillna("")
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DomainError(f"--infer {path}: not UTF-8 text; re-save it as UTF-8 (CSV UTF-8)") from error
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise DomainError(f"--infer {path}: cannot read it as CSV: {error}") from error
    if frame.empty:
        raise DomainError(f"--infer {path}: the file has no rows")
    return frame.apply(lambda c: c.str.strip())


def nice_bounds(low: float, high: float, *, nonnegative: bool) -> tuple[float, float]:
    """[low, high] widened generously and rounded outward to a round step: strictly outside both."""
    # Other sites' extremes differ from this one's (heavy tails): grow by the range's size or
    # magnitude, whichever is larger, on each side.
    grow = MARGIN * max(high - low, abs(high), abs(low), 1e-9)
    low, high = low - grow, high + grow
    step = 10.0 ** math.floor(math.log10(high - low)) / 2  # 50, 5, 0.5 …: bounds a person would write
    lower, upper = math.floor(low / step) * step, math.ceil(high / step) * step
    if nonnegative:
        lower = max(lower, 0.0)  # counts, amounts and ages: 0 is the natural floor, not a leak
    return _tidy(lower), _tidy(upper)


def _tidy(value: float) -> float:
    rounded = round(value, 10)
    return float(int(rounded)) if rounded == int(rounded) else rounded


def _is_sentinel(value: float, others: pd.Series) -> bool:
    """-999, 9999, 99999999 …: all nines, and far outside every other value of the column."""
    digits = f"{abs(value):.10g}"
    if not (value == int(value) and len(digits) >= 2 and set(digits) == {"9"}):
        return False
    if others.empty:
        return False
    if value < 0:
        return bool(others.min() >= 0)
    return bool(others.max() * 2 < value)


def _numeric(name: str, values: pd.Series, blanks: int) -> ColumnGuess:
    distinct = sorted(values.unique())
    codes = [float(v) for v in distinct if _is_sentinel(v, values[values != v])]
    kept = values[~values.isin(codes)]
    low, high = float(kept.min()), float(kept.max())
    lower, upper = nice_bounds(low, high, nonnegative=low >= 0)
    notes = [_blank_share(blanks, len(values) + blanks)]
    if codes:
        notes.append(f"{_fmt_list(codes)} far outside the other values: read as 'not measured'")
    if kept.nunique() <= 2:
        notes.append("two values: an indicator?")
    elif (kept == kept.round()).all() and kept.nunique() <= 10:
        notes.append(f"{kept.nunique()} whole values: if they are codes, move it to categorical")
    notes.append("range widened and rounded outward: tighten it to known limits")
    return ColumnGuess(name, "numeric", "; ".join(notes), lower, upper, codes)


def _blank_share(blanks: int, rows: int) -> str:
    return "no blanks" if blanks == 0 else f"{max(1, round(100 * blanks / rows))} % blank"


def _fmt_list(values: list[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _looks_like_id(name: str, column: pd.Series, numbers: pd.Series | None) -> bool:
    if column.nunique() < len(column) or len(column) < 10:
        return False
    if _ID_NAME.search(name):
        return True
    if numbers is None:
        return True  # distinct text in every row: names, codes, keys
    whole = (numbers == numbers.round()).all()
    return bool(whole and numbers.is_monotonic_increasing)


def guess_column(name: str, column: pd.Series) -> ColumnGuess:
    """Numeric, categorical or skipped, with the reason; `column` holds stripped text."""
    filled = column[~column.isin(BLANKS)]
    blanks = len(column) - len(filled)
    if filled.empty:
        return ColumnGuess(name, "skip", "skipped: every value is blank")
    numbers = pd.to_numeric(filled, errors="coerce")
    is_numeric = bool(numbers.notna().all())
    if _looks_like_id(name, filled, numbers if is_numeric else None) and blanks == 0:
        return ColumnGuess(name, "skip", "skipped: looks like an identifier (a different value in every row)")
    if filled.nunique() == 1:
        return ColumnGuess(name, "skip", "skipped: one value in every row, nothing to learn")
    if is_numeric and not numbers.map(math.isfinite).all():
        return ColumnGuess(name, "skip", "skipped: infinite values; write them as blanks to use it")
    if is_numeric:
        return _numeric(name, numbers.astype(float), blanks)
    if filled.nunique() > MAX_CATEGORIES:
        bad = sorted(set(filled[numbers.isna()]))[:3]
        reason = (
            f"skipped: {filled.nunique()} distinct texts (free text?)"
            if numbers.notna().mean() < 0.5
            else f"skipped: mostly numbers but also {bad}: write those as blanks to use it"
        )
        return ColumnGuess(name, "skip", reason)
    categories = sorted(filled.unique())
    share = _blank_share(blanks, len(column))
    reason = f"{len(categories)} categories in this file, {share}; add any other site's"
    return ColumnGuess(name, "categorical", reason, categories=categories)


def guess_target(name: str, column: pd.Series) -> TargetGuess:
    """binary (two values), multiclass (a few text classes) or regression (numbers)."""
    filled = column[~column.isin(BLANKS)]
    if filled.empty:
        raise DomainError(f"target column {name!r} is blank in every row")
    numbers = pd.to_numeric(filled, errors="coerce")
    counts = filled.value_counts()
    if len(counts) < 2:
        raise DomainError(f"target column {name!r} has a single value; nothing to predict")
    if numbers.notna().all():
        return _numeric_target(name, numbers.astype(float))
    if len(counts) == 2:
        positive = str(counts.index[-1])  # the rarer value: usually the event (default, disease, churn)
        reason = f"two values {sorted(counts.index)}; positive = the rarer one, {positive!r}"
        return TargetGuess(name, "binary", reason, positive_value=positive)
    if len(counts) <= MAX_CLASSES:
        classes = sorted(str(v) for v in counts.index)
        return TargetGuess(name, "multiclass", f"{len(classes)} text classes", classes=classes)
    raise DomainError(
        f"target column {name!r} holds {len(counts)} distinct texts: not a label; choose another --target"
    )


def _numeric_target(name: str, numbers: pd.Series) -> TargetGuess:
    distinct = sorted(numbers.unique())
    if len(distinct) == 2:
        low = _tidy(distinct[0])
        return TargetGuess(name, "binary", f"two values; positive = above {low:g}", positive_above=low)
    lower, upper = nice_bounds(float(numbers.min()), float(numbers.max()), nonnegative=numbers.min() >= 0)
    reason = f"{len(distinct)} distinct numbers: regression; range widened and rounded outward"
    if (numbers == numbers.round()).all() and len(distinct) <= MAX_CLASSES:
        # Whole values are an ordered score or class codes; only the user knows which. Drafted
        # as a score, with the classes to declare (read as text, they match) in the comment.
        codes = ", ".join(f"'{_tidy(value):g}'" for value in distinct)
        reason = (
            f"{len(distinct)} whole values, taken as an ordered score (regression); if they are "
            f"classes, use task: multiclass with target classes: [{codes}]"
        )
    return TargetGuess(name, "regression", reason, min=lower, max=upper)


def infer_columns(frame: pd.DataFrame, target: str) -> tuple[TargetGuess, list[ColumnGuess]]:
    """Guess the target and every other column of a text frame (see `read_as_text`)."""
    duplicated = sorted({str(c).split(".")[0] for c in frame.columns if re.search(r"\.\d+$", str(c))})
    if duplicated and all(d in frame.columns for d in duplicated):
        raise DomainError(f"the file repeats column names {duplicated}: give every column its own name")
    if target not in frame.columns:
        raise DomainError(
            f"--target {target!r} is not a column of the file; columns: {list(frame.columns)[:20]}"
        )
    columns = [guess_column(str(c), frame[c]) for c in frame.columns if c != target]
    return guess_target(target, frame[target]), columns
