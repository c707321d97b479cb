"""A site's file problems come back as errors that name the site and the file."""

from pathlib import Path

import numpy as np
import pytest

from domains import Domain
from domains.yaml_files import load_site_mapping
from fedflow.errors import SiteDataError
from fedflow.sitedata import read_site_frame, split_site
from fedflow.tasks import get_task


def test_missing_file(healthcare: Domain, tmp_path: Path) -> None:
    path = tmp_path / "nowhere.csv"
    with pytest.raises(SiteDataError, match=r"site 'cleveland'.*nowhere\.csv.*does not exist"):
        read_site_frame(path, healthcare.spec, site="cleveland")


def test_empty_file(healthcare: Domain, tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(SiteDataError, match="empty"):
        read_site_frame(path, healthcare.spec, site="hungary")


def test_wrong_delimiter(healthcare: Domain, tmp_path: Path) -> None:
    path = tmp_path / "semicolons.csv"
    source = healthcare.site_path("cleveland").read_text().replace(",", ";")
    path.write_text(source)
    with pytest.raises(SiteDataError, match="delimited"):
        read_site_frame(path, healthcare.spec, site="cleveland")


def test_unsupported_suffix(healthcare: Domain, tmp_path: Path) -> None:
    with pytest.raises(SiteDataError, match=r"\.xlsx"):
        read_site_frame(tmp_path / "data.xlsx", healthcare.spec, site="cleveland")


def test_parquet_reads_like_csv(healthcare: Domain, tmp_path: Path) -> None:
    csv = read_site_frame(healthcare.site_path("hungary"), healthcare.spec, site="hungary")
    path = tmp_path / "hungary.parquet"
    csv.to_parquet(path)
    parquet = read_site_frame(path, healthcare.spec, site="hungary")
    assert parquet.shape == csv.shape


def test_split_is_seeded_and_stratified(healthcare: Domain) -> None:
    frame = read_site_frame(healthcare.site_path("cleveland"), healthcare.spec, site="cleveland")
    labels = get_task("binary").labels(frame, healthcare.spec)
    a = split_site(frame, labels, holdout_fraction=0.25, seed=3)
    b = split_site(frame, labels, holdout_fraction=0.25, seed=3)
    assert a.holdout["id"].tolist() == b.holdout["id"].tolist()
    assert len(a.holdout) == 76
    rate = get_task("binary").labels(a.holdout, healthcare.spec).mean()
    assert abs(rate - labels.mean()) < 0.02
    assert np.intersect1d(a.train["id"], a.holdout["id"]).size == 0


def test_sites_file_paths_are_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "sites.yaml").write_text("sites:\n  a: data/a.csv\n  b: /abs/b.csv\n")
    mapping = load_site_mapping(tmp_path / "sites.yaml")
    assert mapping == {"a": str(tmp_path / "data" / "a.csv"), "b": "/abs/b.csv"}
