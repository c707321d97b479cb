"""`fedflow domains new`: a new domain from a template, pointed at new files, runs at once."""

from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from domains import DOMAINS_ROOT, available_domains, load_domain
from fedflow.cli import app
from fedflow.config import FederationConfig

runner = CliRunner()


@pytest.fixture
def domains_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "my_domains"
    folder.mkdir()
    monkeypatch.setenv("FEDFLOW_DOMAINS_PATH", str(folder))
    return folder


def test_refuses_bad_names_and_overwrites(domains_dir: Path) -> None:
    for bad in ("../escape", "Clinic", "my-clinic", "1clinic"):
        result = runner.invoke(app, ["domains", "new", bad, "--from", "healthcare"])
        assert result.exit_code == 2 and "not a valid domain name" in result.output, bad
    assert list(domains_dir.iterdir()) == []
    result = runner.invoke(app, ["domains", "new", "finance", "--from", "healthcare"])
    assert result.exit_code == 2 and "already exists" in result.output
    result = runner.invoke(app, ["domains", "new", "clinic", "--from", "astrology"])
    assert result.exit_code == 2 and "astrology" in result.output


def test_scaffold_point_at_new_files_and_run(
    domains_dir: Path, tmp_path: Path, prefect_api: None, mlflow_store: str
) -> None:
    result = runner.invoke(app, ["domains", "new", "clinic", "--from", "healthcare"])
    assert result.exit_code == 0, result.output
    assert "clinic" in available_domains()
    folder = domains_dir / "clinic"
    assert (folder / "model.py").is_file() and not (DOMAINS_ROOT / "clinic").exists()

    # The clinic's own files: two new sites, written where a data team would keep them.
    own = tmp_path / "clinic_data"
    own.mkdir()
    source = pd.read_csv(DOMAINS_ROOT / "healthcare" / "data" / "cleveland.csv", dtype=str)
    source.iloc[:150].to_csv(own / "north.csv", index=False)
    source.iloc[150:].to_csv(own / "south.csv", index=False)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["sites"] = {"north": str(own / "north.csv"), "south": str(own / "south.csv")}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))

    listed = runner.invoke(app, ["domains", "show", "clinic"])
    assert listed.exit_code == 0 and "north" in listed.output and "south" in listed.output
    assert load_domain("clinic").spec.site_names == ["north", "south"]

    from flows.coordinator import federated_training

    result_run = federated_training(domain="clinic", federation=FederationConfig(rounds=1), run_name="clinic")
    assert sorted(result_run.per_site) == ["north", "south"]
    assert result_run.registered_model == "clinic-global"
    client = MlflowClient(mlflow_store)
    assert [v.version for v in client.search_model_versions("name='clinic-global'")] in ([1], ["1"])
