"""The command line: listing domains and validating a site's file before it joins."""

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from domains import Domain
from fedflow.cli import app

runner = CliRunner()


def test_domains_lists_healthcare() -> None:
    result = runner.invoke(app, ["domains"])
    assert result.exit_code == 0, result.output
    assert "healthcare" in result.output and "cleveland" in result.output


def test_validate_passes_a_clean_file(healthcare: Domain) -> None:
    result = runner.invoke(
        app, ["validate", "healthcare", "--data", str(healthcare.site_path("switzerland"))]
    )
    assert result.exit_code == 0, result.output
    assert "expectations passed" in result.output


def test_validate_fails_a_broken_file_with_exit_1(healthcare: Domain, tmp_path: Path) -> None:
    frame = pd.read_csv(healthcare.site_path("cleveland"), dtype=str)
    frame.loc[frame.index[:2], "trestbps"] = "999"
    path = tmp_path / "cleveland.csv"
    frame.to_csv(path, index=False)
    result = runner.invoke(app, ["validate", "healthcare", "--data", str(path)])
    assert result.exit_code == 1
    assert "expect_column_values_to_be_between" in result.output and "trestbps" in result.output


def test_validate_names_a_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "healthcare", "--data", str(tmp_path / "nope.csv")])
    assert result.exit_code == 1
    assert "nope.csv" in result.output


def test_run_rejects_an_unknown_domain_and_bad_options() -> None:
    result = runner.invoke(app, ["run", "astrology"])
    assert result.exit_code == 2 and "healthcare" in result.output
    result = runner.invoke(app, ["run", "healthcare", "--rounds", "0"])
    assert result.exit_code == 2 and "rounds" in result.output


def test_run_refuses_a_sites_file_with_unknown_sites(tmp_path: Path) -> None:
    mapping = tmp_path / "sites.yaml"
    mapping.write_text("clevland: /data/cleveland.csv\n")  # misspelt
    result = runner.invoke(app, ["run", "healthcare", "--sites", str(mapping)])
    assert result.exit_code == 2 and "clevland" in result.output


def _flat(text: str) -> str:
    """Console output with rich's line wrapping undone."""
    return " ".join(text.split())


def test_run_refuses_impossible_privacy_and_codec_options() -> None:
    result = runner.invoke(app, ["run", "healthcare", "--secure-aggregation", "--strategy", "fedmedian"])
    assert result.exit_code != 0 and "secure aggregation cannot be combined" in _flat(result.output)
    result = runner.invoke(app, ["run", "healthcare", "--codec", "zip"])
    assert result.exit_code != 0 and "unknown codec" in _flat(result.output)
    result = runner.invoke(app, ["run", "healthcare", "--codec", "topk", "--codec-option", "fraction"])
    assert result.exit_code != 0 and "--codec-option expects KEY=VALUE" in _flat(result.output)


def test_site_serve_checks_its_arguments_before_serving(tmp_path: Path) -> None:
    data = tmp_path / "records.csv"
    data.write_text("a\n1\n")
    result = runner.invoke(
        app,
        [
            "site",
            "serve",
            "--domain",
            "healthcare",
            "--site",
            "mars",
            "--data",
            str(data),
            "--exchange",
            str(tmp_path),
        ],
    )
    assert result.exit_code != 0 and "has no site 'mars'" in _flat(result.output)
    result = runner.invoke(
        app,
        [
            "site",
            "serve",
            "--domain",
            "healthcare",
            "--site",
            "cleveland",
            "--data",
            str(tmp_path / "missing.csv"),
            "--exchange",
            str(tmp_path),
        ],
    )
    assert result.exit_code != 0 and "is not a file" in _flat(result.output)
    result = runner.invoke(
        app, ["site", "serve", "--domain", "healthcare", "--site", "cleveland", "--data", str(data)]
    )
    assert result.exit_code != 0 and "--exchange" in _flat(result.output)  # the site decides its exchange
