"""Drafting a domain from one site's file: column kinds, widened ranges, categories, missing codes,
the task, and `fedflow domains new --infer` end to end (real files, the real CLI)."""

from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from domains import DOMAINS_ROOT, available_domains, load_domain
from domains.inference import guess_column, guess_target, infer_columns, nice_bounds, read_as_text
from fedflow.cli import app

runner = CliRunner()


@pytest.fixture
def domains_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "my_domains"
    folder.mkdir()
    monkeypatch.setenv("FEDFLOW_DOMAINS_PATH", str(folder))
    return folder


def _text(values: list[object]) -> pd.Series:
    return pd.Series([str(v) for v in values], dtype=str)


def test_ranges_are_widened_rounded_and_never_the_rows_extremes() -> None:
    assert nice_bounds(28, 66, nonnegative=True) == (0, 150)
    low, high = nice_bounds(-3.2, 3.1, nonnegative=False)
    assert low < -3.2 and high > 3.1 and float(low).is_integer() and float(high).is_integer()
    for a, b in [(185.0, 2500.0), (0.05, 0.16), (-1.1, -0.2), (7.0, 7.0), (1e6, 3.3e6)]:
        lower, upper = nice_bounds(a, b, nonnegative=a >= 0)
        assert lower <= a and upper > b and (lower < a or lower == 0), (a, b)


def test_duplicated_all_nines_sentinels_become_missing_codes_not_the_range() -> None:
    column = _text([12, 15, 99999999, 18, 20, 99999999, 14, "", -999, 16])
    guess = guess_column("income", column)
    assert guess.kind == "numeric"
    assert guess.missing_codes == [-999.0, 99999999.0]
    assert guess.max is not None and guess.max < 1000 and guess.min == 0
    # 99 among ages up to 98 is a plausible value, not a code.
    assert guess_column("age", _text([20, 45, 98, 99, 60])).missing_codes == []


def test_yes_no_text_is_categorical_and_quoted_in_the_draft(domains_dir: Path, tmp_path: Path) -> None:
    rows = 60
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i:04d}" for i in range(rows)],
            "smoker": ["No", "Yes", "No"] * (rows // 3),
            "visits": [i % 7 for i in range(rows)],
            "outcome": ["Yes" if i % 4 == 0 else "No" for i in range(rows)],
        }
    )
    source = tmp_path / "north.csv"
    frame.to_csv(source, index=False)
    result = runner.invoke(
        app,
        ["domains", "new", "clinic", "--from", "healthcare", "--infer", str(source), "--target", "outcome"],
    )
    assert result.exit_code == 0, result.output
    text = (domains_dir / "clinic" / "config.yaml").read_text()
    assert '"No", "Yes"' in text  # quoted: YAML would otherwise read booleans
    assert '"customer_id": skipped: looks like an identifier' in text  # said, not dropped silently
    spec = load_domain("clinic").spec
    assert spec.task == "binary" and spec.target.positive_value == "Yes"  # the rarer value
    assert [c.categories for c in spec.categorical] == [["No", "Yes"]]
    assert spec.sites == {"north": str(source.resolve())}
    assert all("# guess:" in line for line in text.splitlines() if line.startswith("  - {name"))
    checked = runner.invoke(app, ["validate", "clinic", "--data", str(source)])
    assert checked.exit_code == 0, checked.output


def test_task_kind_from_the_target() -> None:
    assert guess_target("y", _text([0, 1, 1, 0])).task == "binary"
    assert guess_target("y", _text([0, 1, 1, 0])).positive_above == 0
    coded = guess_target("grade", _text([1, 2, 3, 2, 1, 3]))
    assert coded.task == "regression" and "multiclass" in coded.reason  # the alternative is said
    assert guess_target("kind", _text(["a", "b", "c", "a"])).classes == ["a", "b", "c"]
    regression = guess_target("price", _text([1.5 + i * 0.37 for i in range(40)]))
    assert regression.task == "regression" and regression.min == 0 and regression.max is not None
    assert regression.max > 1.5 + 39 * 0.37


def test_a_target_that_is_not_a_column_is_named(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="'label' is not a column"):
        infer_columns(pd.DataFrame({"a": ["1"], "b": ["2"]}), "label")


@pytest.mark.parametrize(
    ("domain", "target"),
    [("healthcare", "num"), ("finance", "Class"), ("telecom", "churn"), ("education", "normexam")],
)
def test_shipped_files_draft_configs_their_own_files_pass(
    domain: str, target: str, domains_dir: Path
) -> None:
    """Inferred from a shipped site's file, the draft validates that very file."""
    spec = load_domain(domain, DOMAINS_ROOT).spec
    first = spec.partition.source if spec.partition is not None else next(iter(spec.sites.values()))
    source = DOMAINS_ROOT / domain / first
    frame = read_as_text(source)
    guess, columns = infer_columns(frame, target)
    for column in (c for c in columns if c.kind == "numeric"):
        values = pd.to_numeric(frame[column.name], errors="coerce").dropna()
        values = values[~values.isin(column.missing_codes)]
        assert column.min is not None and column.max is not None
        assert column.min <= values.min() and column.max > values.max(), column.name
        assert column.min < values.min() or column.min == 0, column.name
    name = f"drafted_{domain}"
    result = runner.invoke(
        app, ["domains", "new", name, "--from", "healthcare", "--infer", str(source), "--target", target]
    )
    assert result.exit_code == 0, result.output
    assert name in available_domains()
    assert load_domain(name).spec.task == guess.task
    checked = runner.invoke(app, ["validate", name, "--data", str(source)])
    assert checked.exit_code == 0, checked.output


def test_breast_cancer_from_scikit_learn_drafts_a_config_the_other_half_passes(
    domains_dir: Path, tmp_path: Path
) -> None:
    """A dataset no template was written for: infer from one half, validate the other."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame["target"] = frame["target"].map({0: "malignant", 1: "benign"})
    frame.iloc[::2].to_csv(tmp_path / "a.csv", index=False)
    frame.iloc[1::2].to_csv(tmp_path / "b.csv", index=False)
    result = runner.invoke(
        app,
        [
            "domains",
            "new",
            "cancer",
            "--from",
            "healthcare",
            "--infer",
            str(tmp_path / "a.csv"),
            "--target",
            "target",
        ],
    )
    assert result.exit_code == 0, result.output
    spec = load_domain("cancer").spec
    assert spec.task == "binary" and spec.target.positive_value == "malignant"
    assert len(spec.numeric) == 30 and not spec.categorical
    other = runner.invoke(app, ["validate", "cancer", "--data", str(tmp_path / "b.csv")])
    assert other.exit_code == 0, other.output


def test_new_copies_code_and_config_not_data(domains_dir: Path) -> None:
    result = runner.invoke(app, ["domains", "new", "lenders", "--from", "finance"])
    assert result.exit_code == 0, result.output
    folder = domains_dir / "lenders"
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "model.py", "schema.py"]
    raw = yaml.safe_load((folder / "config.yaml").read_text())
    assert all("REPLACE_WITH" in path for path in raw["sites"].values())
    assert "data/" not in (folder / "config.yaml").read_text()  # nothing points at the template's files
    simulated = runner.invoke(app, ["domains", "new", "schools", "--from", "education"])
    assert simulated.exit_code == 0, simulated.output
    schools = yaml.safe_load((domains_dir / "schools" / "config.yaml").read_text())
    assert "partition" not in schools and list(schools["sites"]) == ["site_a", "site_b"]


def test_a_refused_draft_leaves_nothing_behind(domains_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "s.csv"
    pd.DataFrame({"x": range(30), "y": ["a"] * 30}).to_csv(source, index=False)
    result = runner.invoke(
        app, ["domains", "new", "flat", "--from", "healthcare", "--infer", str(source), "--target", "y"]
    )
    assert result.exit_code == 2 and "single value" in result.output
    assert not (domains_dir / "flat").exists()
    half = runner.invoke(app, ["domains", "new", "flat", "--from", "healthcare", "--infer", str(source)])
    assert half.exit_code == 2 and "--target" in half.output


def test_class_codes_written_as_numbers_pass_their_own_class_check(domains_dir: Path, tmp_path: Path) -> None:
    """Drafted as a score; declared multiclass with the classes the draft offers, the file validates."""
    rows = 600
    frame = pd.DataFrame(
        {
            "dose": [float(i % 11) for i in range(rows)],
            "site_kind": ["urban", "rural", "urban"] * (rows // 3),
            "grade": [1 + i % 3 for i in range(rows)],  # three classes coded 1, 2, 3
        }
    )
    source = tmp_path / "ward.csv"
    frame.to_csv(source, index=False)
    made = runner.invoke(
        app, ["domains", "new", "grading", "--from", "retail", "--infer", str(source), "--target", "grade"]
    )
    assert made.exit_code == 0, made.output
    config = domains_dir / "grading" / "config.yaml"
    text = config.read_text()
    assert "task: multiclass with target classes: ['1', '2', '3']" in text
    spec = yaml.safe_load(text)
    spec["task"] = "multiclass"
    spec["target"] = {"column": "grade", "classes": [1, 2, 3]}  # unquoted, as a user would write them
    config.write_text(yaml.safe_dump(spec))
    checked = runner.invoke(app, ["validate", "grading", "--data", str(source)])
    assert checked.exit_code == 0, checked.output
    labels = load_domain("grading").spec
    assert labels.target.classes == ["1", "2", "3"]
