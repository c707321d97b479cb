"""Files that would break training are caught at validation, before they cost a round (#17).

Each case writes a real file (a healthcare hospital's rows, damaged) and checks that the site is
excluded by name with a reason naming the column, never a row value, both where a site prepares
(its agent) and where a site's user checks its file (`fedflow validate`, exit 1).
"""

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
from site_helpers import site_agent
from typer.testing import CliRunner

from domains import Domain
from fedflow.cli import app
from fedflow.domain import DomainSpec
from fedflow.errors import SiteDataError
from fedflow.expectations import expectations_from_spec
from fedflow.messages import PrepareReply, PrepareRequest
from fedflow.sitedata import read_site_frame
from validation import validate_frame
from validation.file_checks import SUMMABLE, UNIQUE_NAMES, duplicate_column_checks, summable_limit

SITE = "hungary"
runner = CliRunner()


def _rows(healthcare: Domain) -> pd.DataFrame:
    return pd.read_csv(healthcare.site_path(SITE), dtype=str, keep_default_na=False)


def _prepare(domain: Domain, path: Path, folder: Path) -> PrepareReply:
    agent = site_agent(domain, SITE, folder, path=path)
    reply = agent.prepare(PrepareRequest(federation_id="file-checks", holdout_fraction=0.25, seed=0))
    assert isinstance(reply, PrepareReply)
    return reply


def _excluded(reply: PrepareReply, *needles: str) -> str:
    """The site's reasons, asserted to exclude it by name and to contain every needle."""
    assert reply.summary.site == SITE and not reply.summary.success and reply.statistics is None
    reasons = " / ".join(reply.summary.reasons())
    for needle in needles:
        assert needle in reasons, reasons
    return reasons


def _without_range(healthcare: Domain, column: str) -> Domain:
    """The healthcare domain with no min or max declared for `column` (checks derived again)."""
    raw = healthcare.spec.model_dump()
    for entry in raw["numeric"]:
        if entry["name"] == column:
            entry["min"] = entry["max"] = None
    spec = DomainSpec.model_validate(raw)
    return dataclasses.replace(healthcare, spec=spec, expectations=expectations_from_spec(spec))


def test_a_repeated_column_name_fails_validation_naming_the_column(
    healthcare: Domain, tmp_path: Path
) -> None:
    """pandas would read the copy as `chol.1` and the site would train on the first copy."""
    rows = _rows(healthcare)
    header = ",".join([*rows.columns, "chol"])
    lines = [header, *(",".join([*map(str, row), "1"]) for row in rows.itertuples(index=False))]
    path = tmp_path / "hungary.csv"
    path.write_text("\n".join(lines) + "\n")

    assert list(read_site_frame(path, healthcare.spec, site=SITE).columns).count("chol") == 2
    reasons = _excluded(_prepare(healthcare, path, tmp_path), f"{UNIQUE_NAMES}(chol)", "'chol' 2 times")
    assert "chol.1" in reasons  # the hint says what pandas would have done

    result = runner.invoke(app, ["validate", "healthcare", "--data", str(path), "--site", SITE])
    assert result.exit_code == 1
    assert f"FAIL {UNIQUE_NAMES}(chol)" in result.output.replace("\n", "")


def test_duplicate_checks_are_one_per_repeated_name() -> None:
    """Pure: a failed check per repeated name, one passed check when all are unique."""
    checks = duplicate_column_checks(["a", "b", "a", "c", "b", "a"])
    assert [(c.column, c.unexpected_count, c.success) for c in checks] == [("a", 2, False), ("b", 1, False)]
    assert [c.success for c in duplicate_column_checks(["a", "b"])] == [True]


@pytest.mark.parametrize("cell", ["inf", "-inf", "1e300"])
def test_a_value_too_large_to_sum_fails_validation_even_without_a_declared_range(
    cell: str, healthcare: Domain, tmp_path: Path
) -> None:
    """Before: validation passed (no `max` on the column) and the shared sums overflowed."""
    domain = _without_range(healthcare, "chol")
    rows = _rows(healthcare)
    rows.loc[rows.index[4], "chol"] = cell
    path = tmp_path / "hungary.csv"
    rows.to_csv(path, index=False)

    reasons = _excluded(_prepare(domain, path, tmp_path), f"{SUMMABLE}(chol)", "1 of 293 rows")
    assert "e+300" not in reasons and "inf " not in reasons  # counts, never the value

    with_range = _excluded(_prepare(healthcare, path, tmp_path / "declared"), f"{SUMMABLE}(chol)")
    assert "expect_column_values_to_be_between(chol)" in with_range


def test_the_summable_limit_keeps_the_sum_of_squares_finite() -> None:
    """Pure: `rows` values at the limit square and add up to a finite float64."""
    import numpy as np

    for rows in (1, 293, 10_000, 10**7):
        values = np.full(rows, summable_limit(rows))
        assert np.isfinite(np.square(values).sum())


def test_validate_frame_reports_file_checks_and_still_runs_gx(healthcare: Domain) -> None:
    """A healthy frame gets the two file checks, passed, besides every GX check."""
    frame = read_site_frame(healthcare.site_path(SITE), healthcare.spec, site=SITE)
    summary = validate_frame(frame, healthcare.expectations, site=SITE, suite_name="file-checks")
    assert summary.success
    assert [c.expectation for c in summary.checks[:2]] == [UNIQUE_NAMES, SUMMABLE]
    assert len(summary.checks) == len(healthcare.expectations) + 2


def test_a_folder_given_as_the_data_file_says_so(healthcare: Domain, tmp_path: Path) -> None:
    """Before: 'has suffix ''' (or 'does not exist') for a folder that exists."""
    folder = tmp_path / "hungary"
    folder.mkdir()
    _excluded(_prepare(healthcare, folder, tmp_path), "is a folder", ".csv or .parquet file")
    result = runner.invoke(app, ["validate", "healthcare", "--data", str(folder)])
    assert result.exit_code == 1 and "is a folder" in result.output


def test_a_text_domain_given_one_text_file_asks_for_its_folder(tmp_path: Path) -> None:
    """The reverse: a language site pointing at a single .txt file."""
    from domains import load_domain

    note = tmp_path / "note.txt"
    note.write_text("one clinical note\n")
    with pytest.raises(SiteDataError, match=r"give the folder that holds the site.s \.txt files"):
        read_site_frame(note, load_domain("language").spec, site=SITE)


def test_a_latin1_file_asks_to_be_saved_as_utf8(healthcare: Domain, tmp_path: Path) -> None:
    """Before: the raw codec error ('can't decode byte 0xe9 in position 4')."""
    rows = _rows(healthcare)
    rows.loc[rows.index[2], "dataset"] = "Hongrie-Budapest-Pécs"
    path = tmp_path / "hungary.csv"
    rows.to_csv(path, index=False, encoding="latin-1")

    reasons = _excluded(_prepare(healthcare, path, tmp_path), "not UTF-8", "re-save it as UTF-8")
    assert "Pécs" not in reasons and "0xe9" not in reasons and "position" not in reasons
    result = runner.invoke(app, ["validate", "healthcare", "--data", str(path)])
    assert result.exit_code == 1 and "re-save it as UTF-8" in result.output.replace("\n", "")


def test_old_mac_line_endings_and_a_byte_order_mark_read_as_the_same_rows(
    healthcare: Domain, tmp_path: Path
) -> None:
    """CR-only line endings (old Mac exports) and a UTF-8 BOM (Windows) change nothing."""
    original = read_site_frame(healthcare.site_path(SITE), healthcare.spec, site=SITE)
    path = tmp_path / "hungary.csv"
    text = healthcare.site_path(SITE).read_text().replace("\r\n", "\n").replace("\n", "\r")
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())

    frame = read_site_frame(path, healthcare.spec, site=SITE)
    pd.testing.assert_frame_equal(frame, original)
    reply = _prepare(healthcare, path, tmp_path)
    assert reply.summary.success and reply.statistics is not None


def test_many_sites_validated_together_attribute_a_bad_value_to_its_site(healthcare: Domain) -> None:
    """Simulation validates all sites' rows in one GX run: a site failing a file check sends every
    site through its own run, so only that site fails, by name and column."""
    from validation import validate_frames

    domain = _without_range(healthcare, "chol")
    frames = {
        site: read_site_frame(healthcare.site_path(site), domain.spec, site=site)
        for site in ("cleveland", SITE, "switzerland")
    }
    frames[SITE].loc[3, "chol"] = float("inf")
    summaries = validate_frames(frames, domain.expectations, suite_name="file-checks-many")
    assert {site: s.success for site, s in summaries.items()} == {
        "cleveland": True,
        SITE: False,
        "switzerland": True,
    }
    assert [c.describe().split(":")[0] for c in summaries[SITE].failures] == [f"{SUMMABLE}(chol)"]


def test_a_parquet_file_naming_a_column_twice_is_refused_by_name(healthcare: Domain, tmp_path: Path) -> None:
    """pyarrow cannot even select such a column: the reader names it instead of pyarrow's error."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(_rows(healthcare), preserve_index=False)
    path = tmp_path / "hungary.parquet"
    pq.write_table(table.append_column("chol", table.column("chol")), path)
    _excluded(_prepare(healthcare, path, tmp_path), "names column 'chol' 2 times")
