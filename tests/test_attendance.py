"""A site that stops answering is left out after `max_missed_calls` misses in a row and rejoins when
it answers again; the champion is offered only rounds evaluated by the whole population.

The engine alone (real agents, real training): a channel wrapper makes one site unreachable for
some rounds, as a dead site's channel would (`MissedCall`).
"""

import logging
from collections.abc import Mapping
from pathlib import Path

from site_helpers import engine_plan, in_process_channel

from domains import Domain
from fedflow.config import FederationConfig
from fedflow.errors import FedflowError
from fedflow.federation import run_federation
from fedflow.federation.attendance import Attendance
from fedflow.federation.channel import MissedCall, ReplyHandle, SiteChannel, Undelivered
from fedflow.federation.memory_recorder import MemoryRecorder
from fedflow.messages import Message, PrepareRequest

LOG = logging.getLogger("test_attendance")
SITES = ["cleveland", "hungary", "switzerland", "va_long_beach"]
AWAY = "hungary"


class Away:
    """The channel as seen when `site` does not answer during `rounds` (prepare always answers)."""

    def __init__(self, inner: SiteChannel, site: str, rounds: set[int]) -> None:
        self.inner, self.site, self.rounds = inner, site, rounds
        self.asked: list[int] = []

    def send(self, requests: Mapping[str, Message]) -> dict[str, ReplyHandle]:
        handles = self.inner.send({s: r for s, r in requests.items() if s != self.site})
        if self.site in requests:
            request = requests[self.site]
            round_number = getattr(request, "round", 0)
            self.asked.append(round_number)
            if isinstance(request, PrepareRequest) or round_number not in self.rounds:
                handles.update(self.inner.send({self.site: request}))
            else:
                handles[self.site] = Undelivered(MissedCall(f"site {self.site} is unreachable: no heartbeat"))
        return {site: handles[site] for site in requests}


def _run(healthcare: Domain, tmp_path: Path, away: set[int], rounds: int) -> tuple[Away, MemoryRecorder]:
    config = FederationConfig.model_validate(
        {"rounds": rounds, "seed": 3, "audit": False, "max_missed_calls": 3}
    )
    channel = Away(in_process_channel(healthcare, tmp_path), AWAY, away)
    recorder = MemoryRecorder(checkpoints=False)
    run_federation(
        engine_plan(healthcare, config, "away", sites=SITES), channel=channel, recorder=recorder, log=LOG
    )
    return channel, recorder


def test_a_site_that_keeps_missing_is_left_out_and_rejoins_when_it_answers(
    healthcare: Domain, tmp_path: Path, caplog
) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        channel, recorder = _run(healthcare, tmp_path, away={2, 3}, rounds=5)
    participants = [record.participants for record in recorder.rounds]
    assert AWAY in participants[0]
    # Round 2: its train and evaluate calls miss (2 in a row). Round 3: its train call misses (3):
    # left out; its evaluation is still asked (the rejoin probe) and misses. Round 4: not sampled;
    # it answers the evaluation and is back. Round 5: it trains again.
    assert AWAY not in participants[1] and AWAY not in participants[2] and AWAY not in participants[3]
    assert AWAY in participants[4]
    assert channel.asked == [0, 1, 1, 2, 2, 3, 3, 4, 5, 5]
    assert "site hungary is left out of the federation: missed 3 calls in a row" in caplog.text
    assert "site hungary answers again: it rejoins the federation" in caplog.text
    tags = {k: v for note in recorder.notes for k, v in note.tags.items()}
    assert tags["fedflow.attendance.hungary"].startswith("round 4:")
    # Round 2 was not evaluated by the whole population (hungary missed, not yet left out):
    # recorded, never the champion. From round 3 the population is the three others.
    candidates = [record.champion_candidate for record in recorder.rounds]
    assert candidates == [True, False, True, True, True]
    assert recorder.rounds[1].logged["sites/population"] == 4.0
    assert recorder.rounds[1].logged["sites/evaluated"] == 3.0
    assert recorder.rounds[2].logged["sites/population"] == 3.0  # left out: not in the population


def test_a_site_that_answers_is_never_left_out(healthcare: Domain, tmp_path: Path) -> None:
    _, recorder = _run(healthcare, tmp_path, away=set(), rounds=2)
    assert all(AWAY in record.participants for record in recorder.rounds)
    assert all(record.champion_candidate for record in recorder.rounds)


def test_only_missed_calls_count_a_site_failure_is_an_answer() -> None:
    attendance = Attendance(max_missed_calls=2)
    attendance.record("a", FedflowError("site policy: batch size below the site's minimum"))
    attendance.record("a", RuntimeError("the site's step failed"))
    assert attendance.left_out == {}
    attendance.record("a", MissedCall("no heartbeat"))
    attendance.record("a", None)  # an answer resets the count
    attendance.record("a", MissedCall("no heartbeat"))
    assert attendance.left_out == {}
    attendance.record("a", MissedCall("timed out"))
    assert list(attendance.left_out) == ["a"] and attendance.present(["a", "b"]) == ["b"]
    assert attendance.take_news() == [
        "site a is left out of the federation: missed 2 calls in a row (last: timed out)"
    ]
    assert attendance.take_news() == []
