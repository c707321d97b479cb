"""The command line: listing domains and validating a site's file before it joins."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
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


# `fedflow run` parameters that are not federation config (everything else maps to a config key).
NOT_CONFIG = {"ctx", "domain", "sites", "run_name", "task_runner", "dask_address", "dask_workers", "verbose"}


def test_every_run_flag_maps_to_a_config_key() -> None:
    import inspect

    from fedflow.cli import run
    from fedflow.cli_overrides import RUN_FLAGS, RUN_PAIR_FLAGS
    from fedflow.config import FederationConfig
    from fedflow.dotted_keys import check_key

    flags = set(inspect.signature(run).parameters) - NOT_CONFIG
    assert flags == set(RUN_FLAGS) | set(RUN_PAIR_FLAGS)
    for key in RUN_FLAGS.values():
        check_key(FederationConfig, key)
    for _, section in RUN_PAIR_FLAGS.values():
        if section:
            check_key(FederationConfig, f"{section}.anything")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2", 2),
        ("010", 10),
        ("0.1", 0.1),
        ("1e-3", 0.001),
        ("true", True),
        ("False", False),
        ("null", None),
        ("off", "off"),  # privacy.mode off, not YAML 1.1's false
        ("yes", "yes"),
        ("'3'", "3"),
        ("[cleveland, hungary]", ["cleveland", "hungary"]),
        ("fedprox", "fedprox"),
    ],
)
def test_values_are_read_as_yaml_scalars(text: str, value: object) -> None:
    from fedflow.cli_overrides import parse_value

    assert parse_value(text) == value and type(parse_value(text)) is type(value)


def test_flags_and_c_become_dotted_overrides() -> None:
    from fedflow.cli_overrides import run_overrides

    params = {
        "rounds": None,
        "learning_rate": 0.1,
        "dp": "central",
        "strategy": "fedprox",
        "strategy_option": ["mu=0.5"],
        "codec_option": ["fraction=0.02"],
        "config": ["local.epochs=2", "attack.sites=[cleveland]", "privacy.mode=off"],
    }
    assert run_overrides(params) == {
        "local.learning_rate": 0.1,
        "privacy.mode": "off",  # -c comes after the flags
        "strategy.name": "fedprox",
        "strategy.options.mu": 0.5,
        "compression.options.fraction": 0.02,
        "local.epochs": 2,
        "attack.sites": ["cleveland"],
    }


def test_run_config_applies_the_domains_defaults_then_the_overrides(healthcare: Domain) -> None:
    from fedflow.cli import run_config

    config = run_config(
        healthcare.spec,
        {"min_sites": 3, "strategy": "fedadam", "config": ["strategy.options.tau=1e-3", "local.epochs=3"]},
    )
    assert config.min_sites == 3 and config.min_sites_per_round == 3  # the config's rule, not the CLI's
    assert config.strategy.name == "fedadam" and config.strategy.options == {"tau": 0.001}
    assert config.local.epochs == 3 and config.rounds == healthcare.spec.federation.rounds


def test_run_errors_are_one_readable_line() -> None:
    result = runner.invoke(app, ["run", "healthcare", "-c", "local.epoch=2"])
    output = _flat(result.output)
    assert result.exit_code == 2
    assert "invalid options: unknown key 'local.epoch'; valid keys in local:" in output
    assert "local.epochs" in output and "validation error" not in output
    result = runner.invoke(app, ["run", "healthcare", "--rounds", "0", "--config", "local.batch_size=0"])
    assert result.exit_code == 2
    assert (
        "invalid options: rounds: Input should be greater than or equal to 1; "
        "local.batch_size: Input should be greater than or equal to 1" in _flat(result.output)
    )
    assert "errors.pydantic.dev" not in result.output


FEDFLOW = str(Path(sys.executable).with_name("fedflow"))


def test_the_console_script_reports_validation_with_its_exit_status(
    healthcare: Domain, tmp_path: Path
) -> None:
    """`fedflow validate` leaves without the interpreter's teardown; output and status must survive that."""
    clean = subprocess.run(
        [FEDFLOW, "validate", "healthcare", "--data", str(healthcare.site_path("hungary"))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert clean.returncode == 0, clean.stderr
    assert "expectations passed" in clean.stdout and "FAIL" not in clean.stdout
    frame = pd.read_csv(healthcare.site_path("hungary"), dtype=str)
    frame.loc[frame.index[:3], "chol"] = "-5"
    broken = tmp_path / "hungary.csv"
    frame.to_csv(broken, index=False)
    failed = subprocess.run(
        [FEDFLOW, "validate", "healthcare", "--data", str(broken)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert failed.returncode == 1
    assert "FAIL expect_column_values_to_be_between(chol)" in failed.stderr
    assert "expectations failed" in failed.stderr


def test_checking_a_file_imports_neither_torch_nor_scikit_learn(healthcare: Domain) -> None:
    """Validation is what a site runs first and often: it must not pay for the training stack."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from typer.testing import CliRunner\n"
        "from fedflow.cli import app\n"
        "result = CliRunner().invoke(app, ['validate', 'healthcare', '--data', sys.argv[1]])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('torch', 'sklearn') if m in sys.modules))\n"
    )
    data = str(healthcare.site_path("hungary"))
    done = subprocess.run([sys.executable, "-c", script, data], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_validate_says_how_many_rows_a_file_has_and_needs(healthcare: Domain, tmp_path: Path) -> None:
    small = tmp_path / "small.csv"
    pd.read_csv(healthcare.site_path("hungary")).head(7).to_csv(small, index=False)
    result = runner.invoke(app, ["validate", "healthcare", "--data", str(small)])
    assert result.exit_code == 1
    minimum = healthcare.spec.quality.min_rows
    assert (
        f"FAIL expect_table_row_count_to_be_between (at least {minimum} rows): the file has 7 rows"
        in result.output
    )
