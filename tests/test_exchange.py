"""The exchange: every site's messages under its own prefix, sizes checked on the bytes read,
names that cannot climb out of a prefix, standby sessions claimed once."""

from pathlib import Path

import pytest

from flows.exchange import (
    CLAIM,
    FAILURE,
    REQUEST,
    RESPONSE,
    Claim,
    Claimed,
    Exchange,
    ExchangeError,
    Heartbeat,
)


def test_each_sites_messages_live_under_its_own_prefix(tmp_path: Path) -> None:
    exchange = Exchange(str(tmp_path))
    for site in ("cleveland", "hungary"):
        exchange.mailbox(site, "s1").write("call1", REQUEST, b"{}")
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json"))
    assert files == ["cleveland/s1/call1/request.json", "hungary/s1/call1/request.json"]
    assert exchange.site_prefix("hungary") == f"{tmp_path}/hungary/"


@pytest.mark.parametrize("name", ["..", "../hungary", "a/b", "", ".hidden", "x" * 200])
def test_names_cannot_leave_their_prefix(tmp_path: Path, name: str) -> None:
    exchange = Exchange(str(tmp_path))
    with pytest.raises(ExchangeError):
        exchange.mailbox(name, "s1")
    with pytest.raises(ExchangeError):
        exchange.mailbox("cleveland", "s1").write(name, REQUEST, b"{}")


def test_an_oversized_message_is_refused_on_the_bytes_read(tmp_path: Path) -> None:
    mailbox = Exchange(str(tmp_path), max_message_bytes=100).mailbox("cleveland", "s1")
    mailbox.write("call1", RESPONSE, b"x" * 100)
    assert mailbox.read("call1", RESPONSE) == b"x" * 100
    # Grown after it was written (a store's reported size can lie): what is read decides.
    (tmp_path / "cleveland/s1/call1" / RESPONSE).write_bytes(b"x" * 101)
    with pytest.raises(ExchangeError, match="over 100 bytes"):
        mailbox.read("call1", RESPONSE)
    with pytest.raises(ExchangeError, match=r"no response\.json"):
        mailbox.read("call2", RESPONSE)


def test_pending_calls_failures_and_removal(tmp_path: Path) -> None:
    mailbox = Exchange(str(tmp_path)).mailbox("cleveland", "s1")
    for call in ("a", "b", "c"):
        mailbox.write(call, REQUEST, b"{}")
    mailbox.write("a", RESPONSE, b"{}")
    mailbox.fail("b", "train failed at the site (ValueError); see its own log")
    assert mailbox.pending() == ["c"]
    assert mailbox.has("b", FAILURE) and "ValueError" in mailbox.failure("b")
    mailbox.remove("b")
    assert not (tmp_path / "cleveland/s1/b").exists()


def test_heartbeat_close_and_clear(tmp_path: Path) -> None:
    mailbox = Exchange(str(tmp_path)).mailbox("cleveland", "s1")
    assert mailbox.heartbeat() is None and not mailbox.closed()
    mailbox.beat(Heartbeat(beat=3, interval_s=1.0))
    assert mailbox.heartbeat() == Heartbeat(beat=3, interval_s=1.0)
    mailbox.write("a", REQUEST, b"{}")
    mailbox.close("done")
    assert mailbox.closed()
    mailbox.clear(keep_calls=True)
    assert [p.name for p in (tmp_path / "cleveland/s1").iterdir()] == ["a"]


def test_a_standby_session_is_listed_until_claimed(tmp_path: Path) -> None:
    exchange = Exchange(str(tmp_path))
    standby = exchange.mailbox("cleveland", "standby-1")
    standby.beat(Heartbeat(beat=0, interval_s=1.0))
    exchange.mailbox("cleveland", "s1").beat(Heartbeat(beat=0, interval_s=1.0))  # not a standby
    assert exchange.standby_sessions("cleveland") == ["standby-1"]
    claim = Claim(nonce="a" * 32, federation="heart-q4")
    standby.claim(claim)
    assert (tmp_path / "cleveland/standby-1" / CLAIM).exists()
    assert standby.read_claim() == claim and exchange.standby_sessions("cleveland") == []
    assert standby.accepted() is None
    standby.accept(Claimed(nonce="a" * 32))
    assert standby.accepted() == Claimed(nonce="a" * 32)


def test_a_restarted_site_removes_its_dead_standbys(tmp_path: Path) -> None:
    exchange = Exchange(str(tmp_path))
    exchange.mailbox("cleveland", "standby-old").beat(Heartbeat(beat=9, interval_s=1.0))
    exchange.remove_standbys("cleveland")
    assert exchange.standby_sessions("cleveland") == []
    assert exchange.standby_sessions("nobody") == []
