"""Authentication both ways (fedflow/envelope.py): the coordinator signs every request, every site
signs every reply, each bound to federation, round, site and call; identity comes from the channel.

The engine's own driver runs against real site agents with real Ed25519 keys laid out as in
cross-silo (the coordinator's folder: coordinator.key and every <site>.pub; each site's folder: its
<site>.key and coordinator.pub). An attacker sits between the coordinator's signing channel and
the sites (the exchange or the Prefect API in hostile hands), sees every sealed request and reply,
and rewrites what one site answers: forged, replayed, altered, misattributed or unsigned replies.
Each attack fails to forge anything: the site's call fails with a reason, and nothing it carried
reaches the preprocessing, the rounds or the metrics.
"""

import dataclasses
import json
import logging
import re
import shutil
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from site_helpers import FEDERATION, engine_plan, in_process_channel, site_agent
from typer.testing import CliRunner

from domains import Domain
from fedflow.config import FederationConfig
from fedflow.envelope import key_id, reply_binding, seal_request
from fedflow.errors import FedflowError
from fedflow.federation import FederationOutcome, run_federation
from fedflow.federation.channel import Delivered, ReplyHandle, SiteChannel, Undelivered
from fedflow.federation.memory_recorder import MemoryRecorder
from fedflow.messages import (
    Message,
    PrepareReply,
    PrepareRequest,
    SignedReply,
    SignedRequest,
)
from fedflow.signing import COORDINATOR, create_site_keys, load_private_key
from fedflow.site_agent import SiteAgent
from fedflow.site_policy import PolicyRefusal, SitePolicy

LOG = logging.getLogger("test_authentication")
SITE_LOG = "fedflow.site"
SITES = ["cleveland", "hungary", "switzerland", "va_long_beach"]
HOSTILE = "hungary"


def _keys(folder: Path, sites: list[str] = SITES) -> Path:
    """The cross-silo layout: the coordinator's key folder (returned) and each site's folder/<site>/keys."""
    coordinator = folder / "coordinator-keys"
    create_site_keys(coordinator, COORDINATOR)
    for site in sites:
        own = folder / site / "keys"
        create_site_keys(own, site)
        shutil.move(own / f"{site}.pub", coordinator / f"{site}.pub")  # registered with the coordinator
        shutil.copy(coordinator / f"{COORDINATOR}.pub", own)  # trusted by the site
    return coordinator


def _config(keys: Path | None, **changes: object) -> FederationConfig:
    authentication = {"required": True, "keys_dir": str(keys)} if keys is not None else {}
    return FederationConfig.model_validate(
        {"rounds": 1, "seed": 3, "audit": False, "authentication": authentication, **changes}
    )


@dataclasses.dataclass
class Intercepted:
    """One call of the hostile site, as the attacker sees it."""

    request: Message  # a SignedRequest when the federation requires authentication
    reply: Message  # the site's genuine (signed) reply
    earlier: list["Intercepted"]  # the site's earlier calls in this federation


Tamper = Callable[[Intercepted], Message]


class Attacker:
    """The channel between the coordinator's signing layer and the sites, in hostile hands: it
    records every request each site receives and rewrites one site's replies with `tamper`."""

    def __init__(self, inner: SiteChannel, site: str = HOSTILE, tamper: Tamper | None = None) -> None:
        self.inner, self.site, self.tamper = inner, site, tamper
        self.requests: dict[str, list[Message]] = defaultdict(list)
        self.calls: list[Intercepted] = []

    def send(self, requests: Mapping[str, Message]) -> dict[str, ReplyHandle]:
        """The sites' replies, the hostile one's rewritten."""
        for site, request in requests.items():
            self.requests[site].append(request)
        handles = self.inner.send(requests)
        if self.tamper is None or self.site not in handles:
            return handles
        try:
            reply = handles[self.site].result()
        except Exception:  # the site failed: nothing to rewrite
            return handles
        call = Intercepted(requests[self.site], reply, list(self.calls))
        self.calls.append(call)
        try:
            handles[self.site] = Delivered(self.tamper(call))
        except Exception as error:
            handles[self.site] = Undelivered(error)
        return handles


def _run(
    healthcare: Domain, channel: SiteChannel, config: FederationConfig, name: str, sites: list[str] = SITES
) -> tuple[FederationOutcome, MemoryRecorder]:
    recorder = MemoryRecorder(checkpoints=False)
    plan = engine_plan(healthcare, config, name, sites=sites)
    return run_federation(plan, channel=channel, recorder=recorder, log=LOG), recorder


def _operation(call: Intercepted) -> str:
    assert isinstance(call.request, SignedRequest)
    return call.request.operation


def _signed(call: Intercepted) -> SignedReply:
    assert isinstance(call.reply, SignedReply), f"the site answered {type(call.reply).__name__}"
    return call.reply


def _poisoned(body: str) -> str:
    """A prepare reply whose statistics would drag every numeric feature's mean (the attacker's aim)."""
    reply = json.loads(body)
    for stats in reply["statistics"]["numeric"].values():
        stats["total"] *= 1000.0
        stats["total_sq"] *= 1e6
    return json.dumps(reply)


@pytest.fixture(autouse=True)
def _coordinator_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDFLOW_STATE_DIR", str(tmp_path / "coordinator-state"))


def _excluded_at_prepare(recorder: MemoryRecorder, site: str) -> str:
    """The reason `site` was excluded from the whole federation; asserts nothing it said was used."""
    assert recorder.preparation is not None and recorder.preprocessing is not None
    assert site not in recorder.preparation.eligible
    assert site not in {row["site"] for row in recorder.preprocessing.sites}  # its statistics unused
    for record in recorder.rounds:
        assert site not in record.participants
    return " / ".join(recorder.preparation.excluded[site])


# --- the honest run ------------------------------------------------------------------------


def test_every_request_and_reply_is_signed_and_the_federation_runs(
    healthcare: Domain, tmp_path: Path
) -> None:
    keys = _keys(tmp_path)
    spy = Attacker(in_process_channel(healthcare, tmp_path))
    outcome, recorder = _run(healthcare, spy, _config(keys, rounds=2), "signed")
    assert outcome.rounds_completed == 2
    assert all(sorted(record.participants) == sorted(SITES) for record in recorder.rounds)
    sent = [request for requests in spy.requests.values() for request in requests]
    assert sent and all(isinstance(request, SignedRequest) for request in sent)
    operations = {request.operation for request in sent if isinstance(request, SignedRequest)}
    assert {"prepare", "train", "evaluate"} <= operations


# --- replies the coordinator refuses -------------------------------------------------------


def test_a_reply_forged_with_another_key_cannot_shape_the_preprocessing(
    healthcare: Domain, tmp_path: Path
) -> None:
    """The attacker poisons hungary's statistics and signs them with its own key, claiming hungary's
    key id: hungary is excluded, and the preprocessing is exactly the one without hungary."""
    keys = _keys(tmp_path)
    stranger = Ed25519PrivateKey.generate()
    registered = key_id(load_private_key(tmp_path / HOSTILE / "keys", HOSTILE))  # type: ignore[arg-type]

    def forge(call: Intercepted) -> Message:
        sealed = _signed(call)
        assert isinstance(call.request, SignedRequest)
        body = _poisoned(sealed.body) if _operation(call) == "prepare" else sealed.body
        signature = stranger.sign(reply_binding(call.request, HOSTILE, body))
        return sealed.model_copy(update={"body": body, "key_id": registered, "signature": signature})

    attacker = Attacker(in_process_channel(healthcare, tmp_path), tamper=forge)
    _, recorder = _run(healthcare, attacker, _config(keys), "forged")
    reason = _excluded_at_prepare(recorder, HOSTILE)
    assert f"site {HOSTILE!r}" in reason and "does not verify with its registered key" in reason
    assert [_operation(call) for call in attacker.calls] == ["prepare"]  # never asked again
    _, without = _run(
        healthcare,
        in_process_channel(healthcare, tmp_path / "b"),
        _config(None),
        "without",
        [site for site in SITES if site != HOSTILE],
    )
    assert recorder.preprocessing is not None and without.preprocessing is not None
    assert recorder.preprocessing.preprocessor == without.preprocessing.preprocessor


def test_an_unsigned_reply_cannot_shape_the_preprocessing(healthcare: Domain, tmp_path: Path) -> None:
    """The attacker strips the envelope and answers a plain, poisoned PrepareReply for hungary."""
    keys = _keys(tmp_path)

    def unsigned(call: Intercepted) -> Message:
        return PrepareReply.model_validate_json(_poisoned(_signed(call).body))

    _, recorder = _run(
        healthcare, Attacker(in_process_channel(healthcare, tmp_path), tamper=unsigned), _config(keys), "bare"
    )
    reason = _excluded_at_prepare(recorder, HOSTILE)
    assert reason == f"site {HOSTILE!r} answered with an unsigned PrepareReply"


def test_an_altered_reply_body_is_refused(healthcare: Domain, tmp_path: Path) -> None:
    """hungary's genuine signature over its update, with the reported example count raised 100-fold
    (to weigh more in the mean): the update is dropped from the round."""
    keys = _keys(tmp_path)

    def alter(call: Intercepted) -> Message:
        sealed = _signed(call)
        if _operation(call) != "train":
            return sealed
        body = json.loads(sealed.body)
        body["num_examples"] *= 100
        return sealed.model_copy(update={"body": json.dumps(body)})

    _, recorder = _run(
        healthcare, Attacker(in_process_channel(healthcare, tmp_path), tamper=alter), _config(keys), "altered"
    )
    (record,) = recorder.rounds
    assert HOSTILE not in record.participants
    assert "forged or altered" in record.dropped[HOSTILE]


def test_a_reply_replayed_from_an_earlier_round_is_refused(healthcare: Domain, tmp_path: Path) -> None:
    """Round 2's update is answered with hungary's genuine, signed round-1 update: first as it was,
    then with its envelope rewritten to name round 2's call. Neither verifies."""

    def replay(call: Intercepted, *, relabel: bool) -> Message:
        earlier = [old for old in call.earlier if _operation(old) == "train"]
        if _operation(call) != "train" or not earlier:
            return call.reply
        old, now = _signed(earlier[0]), _signed(call)
        if relabel:  # the envelope claims this call; the signature was made for round 1's
            return old.model_copy(
                update={"round": now.round, "call_id": now.call_id, "request_sha256": now.request_sha256}
            )
        return old

    for relabel, expected in (
        (False, "answers another call (replayed or misrouted)"),
        (True, "forged or altered"),
    ):
        keys = _keys(tmp_path / str(relabel))
        channel = Attacker(
            in_process_channel(healthcare, tmp_path / str(relabel)),
            tamper=lambda call, relabel=relabel: replay(call, relabel=relabel),  # type: ignore[misc]
        )
        _, recorder = _run(healthcare, channel, _config(keys, rounds=2), f"replayed-{relabel}")
        first, second = recorder.rounds
        assert HOSTILE in first.participants and HOSTILE not in second.participants
        assert expected in second.dropped[HOSTILE], second.dropped[HOSTILE]


def test_a_reply_to_another_call_of_the_same_round_is_refused(healthcare: Domain, tmp_path: Path) -> None:
    """hungary's genuine, signed round-1 update is replayed as its answer to round 1's evaluate
    call: its evaluation is not counted (its update, answered for its own call, is)."""
    keys = _keys(tmp_path)

    def swap(call: Intercepted) -> Message:
        trains = [old for old in call.earlier if _operation(old) == "train"]
        if _operation(call) == "evaluate" and trains:
            return trains[-1].reply
        return call.reply

    channel = Attacker(in_process_channel(healthcare, tmp_path), tamper=swap)
    _, recorder = _run(healthcare, channel, _config(keys), "swapped")
    (record,) = recorder.rounds
    assert HOSTILE in record.participants
    assert [_operation(call) for call in channel.calls] == ["prepare", "train", "evaluate"]
    assert HOSTILE not in record.metrics.per_site and len(record.metrics.per_site) == len(SITES) - 1


def test_a_reply_cannot_speak_for_another_site(healthcare: Domain, tmp_path: Path) -> None:
    """hungary's signed reply, naming itself cleveland, reaches the coordinator both as hungary's and
    as cleveland's answer. Replies are checked with the key of the site the channel called: as
    cleveland's it does not verify (cleveland is excluded, hungary gains nothing); as hungary's it
    counts once, as hungary's, whatever name it states."""
    keys = _keys(tmp_path)
    victim = "cleveland"

    class Impersonator:
        def __init__(self, inner: SiteChannel) -> None:
            self.inner = inner

        def send(self, requests: Mapping[str, Message]) -> dict[str, ReplyHandle]:
            handles = self.inner.send(requests)
            if victim in handles and HOSTILE in handles:
                own = handles[HOSTILE].result()
                assert isinstance(own, SignedReply)
                claimed = own.model_copy(update={"site": victim})
                handles[victim] = handles[HOSTILE] = Delivered(claimed)
            return handles

    channel = Impersonator(in_process_channel(healthcare, tmp_path))
    _, recorder = _run(healthcare, channel, _config(keys), "claims")
    reason = _excluded_at_prepare(recorder, victim)
    assert f"site {victim!r}" in reason and "answers another call" in reason
    assert recorder.preparation is not None and recorder.preprocessing is not None
    assert HOSTILE in recorder.preparation.eligible
    assert [row["site"] for row in recorder.preprocessing.sites].count(HOSTILE) == 1


# --- keys missing or wrong: excluded at prepare, on both sides ----------------------------


def test_a_site_without_its_key_is_excluded_at_prepare_and_says_why(
    healthcare: Domain, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = _keys(tmp_path)
    (tmp_path / HOSTILE / "keys" / f"{HOSTILE}.key").unlink()
    spy = Attacker(in_process_channel(healthcare, tmp_path))
    with caplog.at_level(logging.INFO, logger=SITE_LOG):
        _, recorder = _run(healthcare, spy, _config(keys), "no-site-key")
    reason = _excluded_at_prepare(recorder, HOSTILE)
    assert f"site {HOSTILE!r}" in reason and f"{HOSTILE}.key" in reason
    assert [request.operation for request in spy.requests[HOSTILE]] == ["prepare"]  # type: ignore[attr-defined]
    site_side = [r.getMessage() for r in caplog.records if r.name == SITE_LOG and HOSTILE in r.getMessage()]
    assert any(
        str(tmp_path / HOSTILE / "keys" / f"{HOSTILE}.key") in line and "is missing" in line
        for line in site_side
    )


@pytest.mark.parametrize(
    ("registered", "reason"),
    [(None, "has no registered public key"), ("not a key", "is not a usable Ed25519 key")],
    ids=["missing", "unreadable"],
)
def test_a_site_without_a_registered_key_is_never_called(
    healthcare: Domain, tmp_path: Path, registered: str | None, reason: str
) -> None:
    keys = _keys(tmp_path)
    (keys / f"{HOSTILE}.pub").unlink()
    if registered is not None:
        (keys / f"{HOSTILE}.pub").write_text(registered)
    spy = Attacker(in_process_channel(healthcare, tmp_path))
    _, recorder = _run(healthcare, spy, _config(keys), "unregistered")
    excluded = _excluded_at_prepare(recorder, HOSTILE)
    assert excluded.startswith(f"site {HOSTILE!r}") and reason in excluded
    assert str(keys / f"{HOSTILE}.pub") in excluded
    assert spy.requests[HOSTILE] == []


def test_a_site_signing_with_another_key_is_excluded_and_both_sides_name_the_key(
    healthcare: Domain, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = _keys(tmp_path)
    create_site_keys(tmp_path / HOSTILE / "keys", HOSTILE, overwrite=True)  # a new key, never registered
    used = key_id(load_private_key(tmp_path / HOSTILE / "keys", HOSTILE))  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger=SITE_LOG):
        _, recorder = _run(healthcare, in_process_channel(healthcare, tmp_path), _config(keys), "wrong-key")
    reason = _excluded_at_prepare(recorder, HOSTILE)
    assert f"signed by key {used}" in reason and f"({HOSTILE}.pub)" in reason
    assert any(
        used in r.getMessage() and HOSTILE in r.getMessage() for r in caplog.records if r.name == SITE_LOG
    )


def test_a_site_that_does_not_trust_this_coordinator_refuses_it(
    healthcare: Domain, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """hungary holds another coordinator's public key: it refuses every request, and says why."""
    keys = _keys(tmp_path)
    create_site_keys(tmp_path / "other-coordinator", COORDINATOR)
    shutil.copy(tmp_path / "other-coordinator" / f"{COORDINATOR}.pub", tmp_path / HOSTILE / "keys")
    with caplog.at_level(logging.WARNING, logger=SITE_LOG):
        _, recorder = _run(healthcare, in_process_channel(healthcare, tmp_path), _config(keys), "untrusted")
    reason = _excluded_at_prepare(recorder, HOSTILE)
    assert "not by coordinator.pub" in reason and "unsigned refusal" in reason
    assert any(
        "refused a request" in r.getMessage() and "coordinator.pub" in r.getMessage() for r in caplog.records
    )


def test_a_coordinator_without_its_key_does_not_start(healthcare: Domain, tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    (keys / f"{COORDINATOR}.key").unlink()
    with pytest.raises(FedflowError, match=re.escape(f"fedflow keys new --coordinator --dir {keys}")):
        _run(healthcare, in_process_channel(healthcare, tmp_path), _config(keys), "no-coordinator-key")


# --- requests a site refuses ---------------------------------------------------------------


def _guarded_site(healthcare: Domain, folder: Path) -> tuple[SiteAgent, Ed25519PrivateKey]:
    """hungary with `require_authentication: true`, and the coordinator's private key."""
    keys = _keys(folder, [HOSTILE])
    agent = site_agent(healthcare, HOSTILE, folder / HOSTILE)
    policy = SitePolicy(require_authentication=True)
    agent = SiteAgent(dataclasses.replace(agent.settings, policy=policy))
    coordinator = load_private_key(keys, COORDINATOR)
    assert coordinator is not None
    return agent, coordinator


PREPARE = PrepareRequest(federation_id=FEDERATION, holdout_fraction=0.25, seed=0)


def test_a_site_requiring_authentication_refuses_unsigned_requests_and_logs_why(
    healthcare: Domain, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent, _ = _guarded_site(healthcare, tmp_path)
    with (
        caplog.at_level(logging.WARNING, logger=SITE_LOG),
        pytest.raises(PolicyRefusal, match="only requests signed"),
    ):
        agent.handle(PREPARE)
    assert any("refused a request" in r.getMessage() for r in caplog.records if r.name == SITE_LOG)


def test_a_federation_without_authentication_gets_nothing_from_sites_that_require_it(
    healthcare: Domain, tmp_path: Path
) -> None:
    channel = in_process_channel(healthcare, tmp_path)
    for site, agent in channel.agents.items():
        channel.agents[site] = SiteAgent(
            dataclasses.replace(agent.settings, policy=SitePolicy(require_authentication=True))
        )
    with pytest.raises(FedflowError, match="only 0 site"):
        _run(healthcare, channel, _config(None), "unsigned")


def test_a_signed_request_is_answered_once(healthcare: Domain, tmp_path: Path) -> None:
    agent, coordinator = _guarded_site(healthcare, tmp_path)
    sealed = seal_request(PREPARE, site=HOSTILE, key=coordinator)
    reply = agent.handle(sealed)
    assert isinstance(reply, SignedReply) and reply.call_id == sealed.call_id
    with pytest.raises(PolicyRefusal, match="already answered"):
        agent.handle(sealed)


@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        ("another-key", "not by coordinator.pub"),
        ("another-site", "addressed to site 'cleveland'"),
        ("altered-body", "forged or altered"),
        ("another-round", "forged or altered"),
    ],
)
def test_a_site_refuses_requests_the_coordinator_did_not_sign_for_it(
    healthcare: Domain, tmp_path: Path, attack: str, reason: str
) -> None:
    agent, coordinator = _guarded_site(healthcare, tmp_path)
    sealed = seal_request(PREPARE, site=HOSTILE, key=coordinator)
    if attack == "another-key":
        sealed = seal_request(PREPARE, site=HOSTILE, key=Ed25519PrivateKey.generate())
    elif attack == "another-site":
        sealed = seal_request(PREPARE, site="cleveland", key=coordinator)
    elif attack == "altered-body":
        altered = PREPARE.model_copy(update={"holdout_fraction": 0.01})  # a tiny hold-out
        sealed = sealed.model_copy(update={"body": altered.model_dump_json()})
    else:
        sealed = sealed.model_copy(update={"round": 7})
    with pytest.raises(PolicyRefusal, match=reason):
        agent.handle(sealed)
    assert not list((tmp_path / HOSTILE / "state").rglob(sealed.call_id))  # nothing was answered


def test_a_signed_request_with_a_body_that_disagrees_with_its_envelope_is_refused(
    healthcare: Domain, tmp_path: Path
) -> None:
    agent, coordinator = _guarded_site(healthcare, tmp_path)
    sealed = seal_request(PREPARE, site=HOSTILE, key=coordinator)
    lying = sealed.model_copy(update={"operation": "audit"})
    lying = lying.model_copy(update={"signature": coordinator.sign(_request_binding(lying))})
    with pytest.raises(PolicyRefusal, match="does not match its signed envelope"):
        agent.handle(lying)


def _request_binding(envelope: SignedRequest) -> bytes:
    from fedflow.envelope import request_binding

    return request_binding(envelope, envelope.site)


# --- `fedflow site serve` --------------------------------------------------------------------


def test_site_serve_refuses_to_start_without_its_key(healthcare: Domain, tmp_path: Path) -> None:
    from fedflow.cli import app

    policy = tmp_path / "policy.yaml"
    policy.write_text("require_authentication: true\n")
    keys = tmp_path / "keys"
    keys.mkdir()
    arguments = ["site", "serve", "--domain", "healthcare", "--site", HOSTILE]
    arguments += ["--data", str(healthcare.site_path(HOSTILE)), "--exchange", str(tmp_path / "exchange")]
    arguments += ["--keys-dir", str(keys), "--policy", str(policy)]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code != 0
    text = " ".join(result.output.split())
    assert (
        f"{keys / f'{HOSTILE}.key'} is missing" in text and f"fedflow keys new {HOSTILE} --dir {keys}" in text
    )
    assert f"{keys / 'coordinator.pub'} is missing" in text
    assert "serving" not in text
    create_site_keys(keys, HOSTILE)
    create_site_keys(tmp_path / "coordinator", COORDINATOR)
    missing_coordinator = CliRunner().invoke(app, arguments)
    assert missing_coordinator.exit_code != 0 and f"{HOSTILE}.key" not in missing_coordinator.output
