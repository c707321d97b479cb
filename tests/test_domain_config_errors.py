"""config.yaml mistakes: one line per field with file, key, what was found and a hint; unambiguous
values coerced; `fedflow domains check` without data; schema.py only adds to config.yaml's checks."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from domains import DOMAINS_ROOT, load_domain
from fedflow.cli import app
from fedflow.expectations import Expectation, expectations_from_spec

runner = CliRunner()


@pytest.fixture
def domains_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "my_domains"
    folder.mkdir()
    monkeypatch.setenv("FEDFLOW_DOMAINS_PATH", str(folder))
    return folder


def _new(name: str, template: str = "healthcare") -> Path:
    result = runner.invoke(app, ["domains", "new", name, "--from", template])
    assert result.exit_code == 0, result.output
    return Path(result.output.split(" in ", 1)[1].split()[0])


def _edit(config: Path, old: str, new: str) -> None:
    text = config.read_text()
    assert old in text, old
    config.write_text(text.replace(old, new, 1))


def test_unquoted_no_yes_is_one_line_naming_file_key_and_the_fix(domains_dir: Path) -> None:
    folder = _new("clinic")
    config = folder / "config.yaml"
    _edit(config, "categories: [Male, Female]", "categories: [No, Yes]")
    _edit(config, "{name: age, min: 0, max: 120", "{name: age, min: 0, max: lots, colour: red")
    result = runner.invoke(app, ["domains", "check", "clinic"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if str(config) in line and ": " in line]
    assert any(
        "categorical[0] (sex).categories: item 0: found the boolean false" in x and "quote" in x
        for x in lines
    )
    assert any("numeric[0] (age).max: found 'lots'" in x and "number" in x for x in lines)
    assert any(
        "numeric[0] (age).colour: found an unknown key" in x and "allowed here: name, min, max" in x
        for x in lines
    )
    assert "Traceback" not in result.output and len(result.output.splitlines()) < 12


def test_a_numeric_positive_value_is_coerced_to_its_text(domains_dir: Path) -> None:
    folder = _new("lenders", "finance")
    _edit(folder / "config.yaml", "positive_value: bad", "positive_value: 1")
    assert load_domain("lenders").spec.target.positive_value == "1"


def test_check_passes_every_shipped_domain_and_names_a_copied_schema_column(domains_dir: Path) -> None:
    for name in ("healthcare", "finance", "language"):
        result = runner.invoke(app, ["domains", "check", name])
        assert result.exit_code == 0 and "is valid" in result.output, result.output
    folder = _new("loans", "finance")
    config = folder / "config.yaml"
    _edit(config, "  - {name: funded_amnt,", "  - {name: amount,")
    result = runner.invoke(app, ["domains", "check", "loans"])
    assert result.exit_code == 1
    assert (
        "schema.py" in result.output
        and "'funded_amnt'" in result.output
        and "does not declare" in result.output
    )


def test_config_is_the_baseline_and_schema_only_adds(domains_dir: Path) -> None:
    for name in ("healthcare", "finance", "retail", "telecom", "education", "language"):
        domain = load_domain(name, DOMAINS_ROOT)
        baseline = expectations_from_spec(domain.spec)
        assert domain.expectations[: len(baseline)] == baseline, name
    folder = _new("plain")
    (folder / "schema.py").unlink()  # no schema.py: config.yaml's checks are the whole contract
    assert load_domain("plain").expectations == expectations_from_spec(load_domain("plain").spec)
    # An older schema.py returning the whole list still works, and cannot drop the config's checks.
    (folder / "schema.py").write_text(
        "from fedflow.expectations import Expectation\n\n"
        "def expectations(spec):\n"
        "    return [Expectation('expect_column_values_to_not_be_null', {'column': 'chol'})]\n"
    )
    loaded = load_domain("plain")
    assert loaded.expectations[-1] == Expectation("expect_column_values_to_not_be_null", {"column": "chol"})
    assert len(loaded.expectations) == len(expectations_from_spec(loaded.spec)) + 1


def test_required_columns_get_a_not_null_check(domains_dir: Path) -> None:
    folder = _new("strict")
    _edit(
        folder / "config.yaml",
        "{name: chol, min: 50, max: 700,",
        "{name: chol, required: true, min: 50, max: 700,",
    )
    checks = load_domain("strict").expectations
    assert Expectation("expect_column_values_to_not_be_null", {"column": "chol"}) in checks
