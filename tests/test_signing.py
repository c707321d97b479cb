"""Signing keys and envelopes: keys are private and never replaced by accident; a signed request
or reply opens only for the party, federation, round, site and call it was signed for.

The attacks against a running federation are in tests/test_authentication.py.
"""

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from fedflow.cli import app
from fedflow.envelope import AuthenticationError, open_reply, open_request, seal_reply, seal_request
from fedflow.errors import FedflowError
from fedflow.messages import (
    AdvertiseReply,
    AdvertiseRequest,
    RefusalReply,
    SignedReply,
    SignedRequest,
)
from fedflow.secure_aggregation.protocol import SiteSecrets
from fedflow.signing import COORDINATOR, create_site_keys, load_private_key, load_public_key
from fedflow.site_authentication import authentication_problems, claim_call, require_keys
from fedflow.site_policy import PolicyRefusal

REQUEST = AdvertiseRequest(federation_id="f1", round=3)
REPLY = AdvertiseReply(public_keys=SiteSecrets.generate().public())


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Ed25519PrivateKey]:
    """The coordinator's key and two sites' keys, written and read back as files."""
    out = {}
    for owner in (COORDINATOR, "north", "south"):
        create_site_keys(tmp_path, owner)
        key = load_private_key(tmp_path, owner)
        assert key is not None
        out[owner] = key
    return out


def test_keys_are_private_files_never_replaced_by_accident(tmp_path: Path) -> None:
    private, public = create_site_keys(tmp_path, "north")
    assert oct(os.stat(private).st_mode & 0o777) == "0o600"
    assert load_public_key(tmp_path, "north") is not None and public.read_bytes().startswith(b"-----BEGIN")
    with pytest.raises(FileExistsError):
        create_site_keys(tmp_path, "north")
    before = public.read_bytes()
    create_site_keys(tmp_path, "north", overwrite=True)
    assert public.read_bytes() != before
    assert load_private_key(tmp_path, "east") is None and load_public_key(tmp_path, "east") is None


def test_a_site_names_every_key_it_lacks_or_cannot_read(tmp_path: Path) -> None:
    problems = authentication_problems(tmp_path, "north")
    assert set(problems) == {"north.key", "coordinator.pub"}
    assert f"fedflow keys new north --dir {tmp_path}" in problems["north.key"]
    create_site_keys(tmp_path, "north")
    (tmp_path / "coordinator.pub").write_text("not a key")
    problems = authentication_problems(tmp_path, "north")
    assert list(problems) == ["coordinator.pub"] and "not a usable Ed25519 key" in problems["coordinator.pub"]
    with pytest.raises(FedflowError, match=r"requires authentication, but .*coordinator\.pub"):
        require_keys(tmp_path, "north")


def test_a_request_opens_only_at_its_site_with_its_coordinators_key(
    keys: dict[str, Ed25519PrivateKey],
) -> None:
    coordinator = keys[COORDINATOR].public_key()
    sealed = seal_request(REQUEST, site="north", key=keys[COORDINATOR])
    assert open_request(sealed, site="north", coordinator_key=coordinator) == REQUEST
    assert seal_request(REQUEST, site="north", key=keys[COORDINATOR]).call_id != sealed.call_id  # fresh
    with pytest.raises(AuthenticationError, match="addressed to site 'north'"):
        open_request(sealed, site="south", coordinator_key=coordinator)
    with pytest.raises(AuthenticationError, match=r"not by coordinator\.pub"):  # a site posing as coordinator
        open_request(
            seal_request(REQUEST, site="north", key=keys["south"]), site="north", coordinator_key=coordinator
        )
    for field, value in (
        ("federation_id", "f2"),
        ("round", 4),
        ("call_id", "f" * 32),
        ("operation", "audit"),
        ("body", AdvertiseRequest(federation_id="f1", round=4).model_dump_json()),
    ):
        with pytest.raises(AuthenticationError, match="forged or altered"):
            open_request(sealed.model_copy(update={field: value}), site="north", coordinator_key=coordinator)


def _sealed(keys: dict[str, Ed25519PrivateKey]) -> tuple[SignedRequest, SignedReply]:
    request = seal_request(REQUEST, site="north", key=keys[COORDINATOR])
    return request, seal_reply(REPLY, request=request, site="north", key=keys["north"])


def test_a_reply_opens_only_for_the_call_it_answers_signed_by_its_site(
    keys: dict[str, Ed25519PrivateKey],
) -> None:
    request, reply = _sealed(keys)
    north = keys["north"].public_key()
    assert open_reply(reply, request=request, inner=REQUEST, site_key=north) == REPLY
    with pytest.raises(
        AuthenticationError, match="not by the site's registered key"
    ):  # south signing for north
        forged = seal_reply(REPLY, request=request, site="north", key=keys["south"])
        open_reply(forged, request=request, inner=REQUEST, site_key=north)
    with pytest.raises(AuthenticationError, match="forged or altered"):
        altered = reply.model_copy(
            update={"body": AdvertiseReply(public_keys=SiteSecrets.generate().public()).model_dump_json()}
        )
        open_reply(altered, request=request, inner=REQUEST, site_key=north)
    later = seal_request(REQUEST, site="north", key=keys[COORDINATOR])  # the same request, another call
    with pytest.raises(AuthenticationError, match="another call"):
        open_reply(reply, request=later, inner=REQUEST, site_key=north)


@pytest.mark.parametrize(
    ("field", "value"),
    [("federation_id", "f2"), ("round", 4), ("site", "south")],
    ids=["another-federation", "another-round", "another-site"],
)
def test_a_reply_is_bound_to_federation_round_and_site(
    keys: dict[str, Ed25519PrivateKey], field: str, value: object
) -> None:
    """The coordinator's request for another federation, round or site, with this reply's call id: the
    reply signed for this one does not open for it."""
    request, reply = _sealed(keys)
    other = request.model_copy(update={field: value})
    site_key = keys["north"].public_key()
    with pytest.raises(AuthenticationError):
        open_reply(reply, request=other, inner=REQUEST, site_key=site_key)


def test_a_signed_refusal_is_the_sites_refusal(keys: dict[str, Ed25519PrivateKey]) -> None:
    request = seal_request(REQUEST, site="north", key=keys[COORDINATOR])
    refusal = seal_reply(
        RefusalReply(category="call budget"), request=request, site="north", key=keys["north"]
    )
    with pytest.raises(PolicyRefusal, match="call budget"):
        open_reply(refusal, request=request, inner=REQUEST, site_key=keys["north"].public_key())


def test_a_call_is_claimed_once(tmp_path: Path) -> None:
    assert claim_call(tmp_path, "f1", "north", "a" * 32)
    assert not claim_call(tmp_path, "f1", "north", "a" * 32)
    assert claim_call(tmp_path, "f1", "south", "a" * 32)  # each site's own record
    with pytest.raises(ValueError, match="letters and digits"):
        claim_call(tmp_path, "f1", "north", "../escape")


def test_keys_cli_never_prints_keys(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["keys", "new", "north", "--dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "PRIVATE KEY" not in result.output and "PUBLIC KEY" not in result.output
    listed = runner.invoke(app, ["keys", "list", "--dir", str(tmp_path)])
    assert "north" in listed.output and "BEGIN" not in listed.output


def test_keys_cli_makes_the_coordinators_key(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["keys", "new", "--coordinator", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (
        load_private_key(tmp_path, COORDINATOR) is not None
        and load_public_key(tmp_path, COORDINATOR) is not None
    )
    assert "coordinator.pub" in result.output and "BEGIN" not in result.output
    again = runner.invoke(app, ["keys", "new", "--coordinator", "--dir", str(tmp_path)])
    assert again.exit_code != 0 and "refusing to replace" in again.output
    for arguments in ([], ["north", "--coordinator"], [COORDINATOR]):
        refused = runner.invoke(app, ["keys", "new", *arguments, "--dir", str(tmp_path / "other")])
        assert refused.exit_code != 0 and "--coordinator" in refused.output
    assert not (tmp_path / "other").exists()


def test_flow_excludes_a_site_without_a_key(
    prefect_api: None, mlflow_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulation: every site's key and the coordinator's in the federation's keys_dir; switzerland
    has none, so it cannot sign and is excluded at preparation."""
    from fedflow.config import AuthConfig, FederationConfig
    from flows.coordinator import federated_training

    keys = tmp_path / "keys"
    for owner in (COORDINATOR, "cleveland", "hungary", "va_long_beach"):  # switzerland has no key
        create_site_keys(keys, owner)
    config = FederationConfig(rounds=1, authentication=AuthConfig(required=True, keys_dir=str(keys)))
    result = federated_training(domain="healthcare", federation=config, run_name="signed")
    client = MlflowClient(mlflow_store)
    participants = client.get_metric_history(result.mlflow_run_id, "sites/participants")[-1].value
    excluded = client.get_run(result.mlflow_run_id).data.tags["sites.excluded"]
    assert (participants, excluded) == (3, "switzerland")
