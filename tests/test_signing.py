"""Authenticated updates: signed updates pass; forged, replayed, altered and unsigned ones do not."""

import os
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from fedflow.cli import app
from fedflow.errors import PayloadError
from fedflow.params import encode
from fedflow.signing import create_site_keys, load_private_key, load_public_key, sign_update, verify_update

PAYLOAD = encode({"w": np.ones(3, np.float32)})


def test_sign_and_verify(tmp_path: Path) -> None:
    create_site_keys(tmp_path, "north")
    create_site_keys(tmp_path, "south")
    north, north_pub = load_private_key(tmp_path, "north"), load_public_key(tmp_path, "north")
    assert north is not None
    assert oct(os.stat(tmp_path / "north.key").st_mode & 0o777) == "0o600"
    signature = sign_update(north, federation_id="f1", round_number=3, site="north", payload=PAYLOAD)
    verify_update(north_pub, signature, federation_id="f1", round_number=3, site="north", payload=PAYLOAD)

    with pytest.raises(PayloadError, match="replayed"):  # an old round's update sent again
        verify_update(north_pub, signature, federation_id="f1", round_number=4, site="north", payload=PAYLOAD)
    with pytest.raises(PayloadError, match="replayed"):  # another federation's update
        verify_update(north_pub, signature, federation_id="f2", round_number=3, site="north", payload=PAYLOAD)
    with pytest.raises(PayloadError, match="altered"):  # payload changed in transit
        verify_update(
            north_pub, signature, federation_id="f1", round_number=3, site="north", payload=PAYLOAD + b"x"
        )
    forged = sign_update(
        load_private_key(tmp_path, "south"), federation_id="f1", round_number=3, site="north", payload=PAYLOAD
    )  # type: ignore[arg-type]
    with pytest.raises(PayloadError, match="forged"):  # south pretending to be north
        verify_update(north_pub, forged, federation_id="f1", round_number=3, site="north", payload=PAYLOAD)
    with pytest.raises(PayloadError, match="unsigned"):
        verify_update(north_pub, b"", federation_id="f1", round_number=3, site="north", payload=PAYLOAD)
    with pytest.raises(PayloadError, match="no registered public key"):
        verify_update(None, signature, federation_id="f1", round_number=3, site="north", payload=PAYLOAD)
    with pytest.raises(FileExistsError):
        create_site_keys(tmp_path, "north")


def test_keys_cli_never_prints_keys(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["keys", "new", "north", "--dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "PRIVATE KEY" not in result.output and "PUBLIC KEY" not in result.output
    listed = runner.invoke(app, ["keys", "list", "--dir", str(tmp_path)])
    assert "north" in listed.output and "BEGIN" not in listed.output


def test_flow_drops_a_site_without_a_key(
    prefect_api: None, mlflow_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fedflow.config import AuthConfig, FederationConfig
    from flows.coordinator import federated_training

    keys = tmp_path / "keys"
    for site in ("cleveland", "hungary", "va_long_beach"):  # switzerland has no key
        create_site_keys(keys, site)
    config = FederationConfig(rounds=1, authentication=AuthConfig(required=True, keys_dir=str(keys)))
    result = federated_training(domain="healthcare", federation=config, run_name="signed")
    client = MlflowClient(mlflow_store)
    participants = client.get_metric_history(result.mlflow_run_id, "sites/participants")[-1].value
    dropped = client.get_metric_history(result.mlflow_run_id, "sites/dropped")[-1].value
    assert (participants, dropped) == (3, 1)
