"""Reading a site's own data file, and splitting it into train and hold-out at the site."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fedflow.domain import DomainSpec
from fedflow.errors import SiteDataError
from fedflow.partition import dirichlet_partition, iid_partition, natural_partition
from fedflow.tasks import get_task

_SITE_LOG = logging.getLogger("fedflow.site")
_READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def read_site_frame(path: Path, spec: DomainSpec, *, site: str) -> pd.DataFrame:
    """Read a site's CSV or Parquet file with categorical columns as text.

    Errors name the site and the file, and say what to check. Missing codes declared in the
    domain (e.g. cholesterol recorded as 0) are turned into real missing values here. A header
    that names a column twice is kept as written (pandas would rename the copy `Name.1`), so
    that validation can name the duplicated column.
    """
    _check_data_path(path, spec, site=site)
    if path.is_dir():
        return read_text_folder(path, spec, site=site)
    kind = _READERS[path.suffix.lower()]
    try:
        frame = _read_csv(path, spec) if kind == "csv" else _read_parquet(path, site=site)
    except UnicodeDecodeError as error:
        raise SiteDataError(
            f"site {site!r}: {path} is not UTF-8 text (it may be latin-1 or Windows-1252); "
            "re-save it as UTF-8 (e.g. 'CSV UTF-8' in a spreadsheet) and try again"
        ) from error
    except pd.errors.EmptyDataError as error:
        raise SiteDataError(f"site {site!r}: data file {path} is empty") from error
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise SiteDataError(f"site {site!r}: cannot read {path}: {error}") from error
    if frame.empty:
        raise SiteDataError(f"site {site!r}: data file {path} has a header but no rows")
    if len(frame.columns) == 1 and len(spec.input_columns) > 1:
        only = str(frame.columns[0])
        hint = (
            " (it looks like ';'- or tab-delimited; save it comma-separated)"
            if (";" in only or "\t" in only)
            else ""
        )
        raise SiteDataError(f"site {site!r}: {path} has a single column {only[:60]!r}{hint}")
    return normalise_missing(frame, spec)


def _check_data_path(path: Path, spec: DomainSpec, *, site: str) -> None:
    """A clear error when the path is missing, a folder where a file is expected, or the reverse."""
    reads_folders = get_task(spec.task).reads_text_folders
    if path.is_dir():
        if reads_folders:
            return
        raise SiteDataError(
            f"site {site!r}: {path} is a folder; give the site's .csv or .parquet file, not a folder"
        )
    if not path.exists():
        raise SiteDataError(f"site {site!r}: data file {path} does not exist")
    if path.suffix.lower() == ".txt" and reads_folders:
        raise SiteDataError(
            f"site {site!r}: {path} is one text file; give the folder that holds the site's .txt files "
            "(one text each), or a .csv/.parquet file"
        )
    if path.suffix.lower() not in _READERS:
        raise SiteDataError(f"site {site!r}: {path} has suffix {path.suffix!r}; use a .csv or .parquet file")
    if not path.is_file():
        raise SiteDataError(f"site {site!r}: {path} is not a regular file; give the site's .csv or .parquet")


def _read_csv(path: Path, spec: DomainSpec) -> pd.DataFrame:
    """A CSV in UTF-8 (with or without a byte-order mark; any line endings), its header as written."""
    text_columns = {c.name: "string" for c in spec.categorical}
    if spec.target.classes or spec.target.positive_value is not None:
        # Labels are compared as text: classes coded `1, 2, 3` must stay "1", not become 1 or 1.0.
        text_columns[spec.target.column] = "string"
    frame = pd.read_csv(path, dtype=text_columns, encoding="utf-8-sig")
    # pandas renames a repeated name (`Income`, `Income.1`); the raw header keeps the evidence.
    header = pd.read_csv(path, header=None, nrows=1, dtype=str, encoding="utf-8-sig", keep_default_na=False)
    names = [str(name) for name in header.iloc[0]] if len(header) else []
    if len(names) == len(frame.columns) and len(set(names)) < len(names):
        frame.columns = pd.Index(names)
    return frame


def _read_parquet(path: Path, *, site: str) -> pd.DataFrame:
    """A Parquet file; one naming a column twice is refused by name (pyarrow cannot select it)."""
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise SiteDataError(
            f"site {site!r}: {path} names column {repeated[0]!r} {names.count(repeated[0])} times; "
            "rename or remove the copies"
        )
    return pd.read_parquet(path)


def read_text_folder(folder: Path, spec: DomainSpec, *, site: str) -> pd.DataFrame:
    """A language site's folder of UTF-8 `.txt` files (e.g. one clinical note each): one row per file."""
    files = sorted(p for p in folder.rglob("*.txt") if p.is_file())
    if not files:
        raise SiteDataError(f"site {site!r}: folder {folder} has no .txt files")
    texts = []
    for index, file in enumerate(files, start=1):
        try:
            # utf-8-sig: notes saved on Windows often start with a byte-order mark.
            texts.append(file.read_text(encoding="utf-8-sig").strip())
        except UnicodeDecodeError as error:
            # A file name can identify a patient: it stays in the site's own log.
            _SITE_LOG.error("site %s: %s is not UTF-8 (byte %d)", site, file, error.start)
            raise SiteDataError(
                f"site {site!r}: text file {index} of {len(files)} in the data folder is not UTF-8 "
                "(its name is in the site's own log); re-save it as UTF-8"
            ) from error
    return pd.DataFrame({spec.target.column: pd.Series(texts, dtype="string")})


def normalise_missing(frame: pd.DataFrame, spec: DomainSpec) -> pd.DataFrame:
    """Replace the domain's declared missing codes by NaN, in a copy."""
    return mask_missing_codes(frame, missing_codes(spec))


def missing_codes(spec: DomainSpec) -> dict[str, list[float]]:
    """Column -> the codes that mean "not measured" in that column."""
    return {c.name: list(c.missing_codes) for c in spec.numeric if c.missing_codes}


def mask_missing_codes(frame: pd.DataFrame, codes: dict[str, list[float]]) -> pd.DataFrame:
    """Replace `codes[column]` values by NaN in numeric columns, in a copy."""
    frame = frame.copy()
    for column, values in codes.items():
        if column in frame.columns and pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = frame[column].mask(frame[column].isin(values))
    return frame


def partition_table(frame: pd.DataFrame, spec: DomainSpec) -> dict[str, np.ndarray]:
    """Every simulated site's row indices in the domain's partitioned table."""
    part = spec.partition
    if part is None:
        raise ValueError(f"domain {spec.name!r} declares no partition")
    if part.method == "iid":
        sites = iid_partition(len(frame), num_sites=part.num_sites or 1, seed=part.seed)
    elif part.method == "dirichlet":
        labels = frame[spec.target.column].astype(str).to_numpy()
        sites = dirichlet_partition(
            labels,
            num_sites=part.num_sites or 1,
            alpha=part.alpha or 1.0,
            seed=part.seed,
            min_rows=part.min_rows,
        )
    else:
        column = part.column or ""
        if column not in frame.columns:
            raise SiteDataError(f"partition column {column!r} is not in the table")
        sites = natural_partition(frame[column], groups=part.groups, num_groups=part.num_groups)
    return {name: np.asarray(rows) for name, rows in sites.items()}


@dataclass(frozen=True)
class SiteSplit:
    """A site's rows split into its training part and its hold-out part (stays at the site)."""

    train: pd.DataFrame
    holdout: pd.DataFrame


def split_site(
    frame: pd.DataFrame, labels: np.ndarray | None, *, holdout_fraction: float, seed: int
) -> SiteSplit:
    """Seeded hold-out split, stratified by class `labels` (if given) when every class has two rows."""
    from sklearn.model_selection import train_test_split

    if holdout_fraction == 0:
        return SiteSplit(train=frame.reset_index(drop=True), holdout=frame.iloc[:0].reset_index(drop=True))
    stratify = None
    if labels is not None:
        _, class_counts = np.unique(labels, return_counts=True)
        stratify = labels if len(class_counts) > 1 and class_counts.min() >= 2 else None
    train_idx, holdout_idx = train_test_split(
        np.arange(len(frame)), test_size=holdout_fraction, random_state=seed % (2**32), stratify=stratify
    )
    return SiteSplit(
        train=frame.iloc[np.sort(train_idx)].reset_index(drop=True),
        holdout=frame.iloc[np.sort(holdout_idx)].reset_index(drop=True),
    )
