"""What a hostile site says about itself cannot steer the federation: the coordinator (the engine's
driver, site agents in this process) bounds, checks or ignores every claim a reply makes.

Each attack plays the hostile site as a small channel wrapper that alters that site's replies
(its agent is honest; what reaches the coordinator is not), and compares the run with one where
the site simply said nothing: a forged claim must weigh exactly as much as no claim.
"""

import dataclasses
import logging
import math
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd
import pytest
from site_helpers import engine_plan, in_process_channel

from domains import Domain
from fedflow.config import FederationConfig
from fedflow.errors import FedflowError
from fedflow.federation import FederationOutcome, run_federation
from fedflow.federation.channel import Delivered, ReplyHandle, SiteChannel, Undelivered
from fedflow.federation.in_process import InProcessChannel
from fedflow.federation.memory_recorder import MemoryRecorder
from fedflow.messages import EvaluateReply, Message, PrepareReply
from fedflow.signing import COORDINATOR, create_site_keys
from fedflow.site_agent import SiteAgent

LOG = logging.getLogger("test_site_claims")
SITES = ["cleveland", "hungary", "switzerland", "va_long_beach"]
HOSTILE = "hungary"
Forge = Callable[[Message], Message]


class HostileSite:
    """The channel as the coordinator sees it when one site forges its replies."""

    def __init__(self, inner: SiteChannel, site: str, forge: Forge) -> None:
        self.inner, self.site, self.forge = inner, site, forge
        self.requests: list[Message] = []  # what reached the hostile site

    def send(self, requests: Mapping[str, Message]) -> dict[str, ReplyHandle]:
        """The honest replies, the hostile site's as it chooses to forge it."""
        if self.site in requests:
            self.requests.append(requests[self.site])
        handles = self.inner.send(requests)
        if self.site in handles:
            try:
                reply = handles[self.site].result()
            except Exception:  # its agent failed: nothing to forge
                return handles
            try:
                handles[self.site] = Delivered(self.forge(reply))
            except Exception as error:
                handles[self.site] = Undelivered(error)
        return handles


def _silent(kind: type[Message]) -> Forge:
    """The reference: the site's call of this kind fails, as if the site said nothing."""

    def forge(reply: Message) -> Message:
        if isinstance(reply, kind):
            raise FedflowError(f"site {HOSTILE!r} did not answer")
        return reply

    return forge


def _config(**changes: object) -> FederationConfig:
    return FederationConfig.model_validate({"rounds": 2, "seed": 3, "audit": False, **changes})


def _run(
    healthcare: Domain, channel: SiteChannel, config: FederationConfig, name: str
) -> tuple[FederationOutcome, MemoryRecorder]:
    recorder = MemoryRecorder(checkpoints=False)
    outcome = run_federation(
        engine_plan(healthcare, config, name, sites=SITES), channel=channel, recorder=recorder, log=LOG
    )
    return outcome, recorder


def _champion_round(recorder: MemoryRecorder) -> int:
    """The round whose model takes the `champion` alias: the best global value (as the tracker does)."""
    values = [(record.metrics.mean[record.champion_metric], record.state.round) for record in recorder.rounds]
    return max(values)[1]


# --- identity ------------------------------------------------------------------------------


def _broken(healthcare: Domain, folder: Path, site: str) -> Path:
    frame = pd.read_csv(healthcare.site_path(site), dtype=str)
    frame.loc[frame.index[:3], "age"] = "150"
    path = folder / f"{site}-broken.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_site_that_reports_another_sites_name_cannot_take_it_anywhere(
    healthcare: Domain, tmp_path: Path
) -> None:
    """hungary fails validation and calls itself cleveland; va_long_beach passes and calls itself
    hungary: exclusions, summaries, the sites table, per-site metrics and MLflow keys all follow
    the channel, never the reported name."""
    inner = in_process_channel(healthcare, tmp_path, paths={HOSTILE: _broken(healthcare, tmp_path, HOSTILE)})
    claims = {HOSTILE: "cleveland", "va_long_beach": HOSTILE}

    class Impostors:
        def send(self, requests: Mapping[str, Message]) -> dict[str, ReplyHandle]:
            handles = inner.send(requests)
            for site, claim in claims.items():
                if site in handles:
                    reply = handles[site].result()
                    if isinstance(reply, PrepareReply):
                        summary = reply.summary.model_copy(update={"site": claim})
                        handles[site] = Delivered(reply.model_copy(update={"summary": summary}))
            return handles

    outcome, recorder = _run(healthcare, Impostors(), _config(), "impostors")

    eligible = ["cleveland", "switzerland", "va_long_beach"]
    assert recorder.preparation is not None and recorder.preprocessing is not None
    assert [summary.site for summary in recorder.preparation.summaries] == SITES
    assert recorder.preparation.eligible == outcome.eligible == eligible
    assert list(recorder.preparation.excluded) == list(outcome.excluded) == [HOSTILE]
    assert [row["site"] for row in recorder.preprocessing.sites] == eligible
    for record in recorder.rounds:
        assert sorted(record.metrics.per_site) == eligible
        named = {key.split("/")[1] for key in record.logged if key.startswith("site/")}
        assert named == set(eligible)
    assert sorted(outcome.per_site) == eligible


# --- evaluation: example counts and metrics ------------------------------------------------

PERFECT = {"loss": 0.0, "accuracy": 1.0, "balanced_accuracy": 1.0, "roc_auc": 1.0, "pr_auc": 1.0}
EVALUATION_FORGERIES = {
    "a billion examples and a perfect score": {**PERFECT, "num_examples": 1e9},
    "one more example than its hold-out": {"num_examples_plus": 1.0},
    "an infinite score": {"roc_auc": math.inf},
    "an impossible score": {"roc_auc": 50.0},
    "a negative loss": {"loss": -3.0},
    "no example count": {"num_examples": None},
    "a NaN example count": {"num_examples": math.nan},
    "a negative example count": {"num_examples": -1e9},
}


def _forged_evaluation(change: dict[str, float | None]) -> Forge:
    def forge(reply: Message) -> Message:
        if not isinstance(reply, EvaluateReply):
            return reply
        metrics = dict(reply.metrics)
        for name, value in change.items():
            if name == "num_examples_plus":
                metrics["num_examples"] += value  # type: ignore[operator]
            elif value is None:
                metrics.pop(name)
            else:
                metrics[name] = value
        return reply.model_copy(update={"metrics": metrics})

    return forge


@pytest.mark.parametrize("forgery", sorted(EVALUATION_FORGERIES))
def test_a_site_cannot_move_the_global_metric_or_the_champion_with_its_claims(
    forgery: str, healthcare: Domain, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the global metric was weighted by whatever `num_examples` a site sent (one billion
    examples at roc_auc 1.0 put the global roc_auc at 1.0 and the champion on the attacker's round),
    and an infinite or impossible value became the global one."""
    honest = in_process_channel(healthcare, tmp_path / "honest")
    _, silent = _run(healthcare, HostileSite(honest, HOSTILE, _silent(EvaluateReply)), _config(), "silent")

    forged = HostileSite(
        in_process_channel(healthcare, tmp_path / "forged"),
        HOSTILE,
        _forged_evaluation(EVALUATION_FORGERIES[forgery]),  # type: ignore[arg-type]
    )
    caplog.clear()  # only the attacked run's warnings (the silent run logs its failed calls)
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        _, attacked = _run(healthcare, forged, _config(), "forged")

    for reference, record in zip(silent.rounds, attacked.rounds, strict=True):
        assert HOSTILE not in record.metrics.per_site
        assert record.metrics.mean == reference.metrics.mean
        assert 0.0 <= record.metrics.mean["roc_auc"] < 0.99
    assert _champion_round(attacked) == _champion_round(silent)
    dropped = [r.getMessage() for r in caplog.records if "evaluation" in r.getMessage()]
    assert len(dropped) == len(attacked.rounds) and all(repr(HOSTILE) in line for line in dropped)


def test_an_honest_site_reporting_its_whole_holdout_counts(healthcare: Domain, tmp_path: Path) -> None:
    """The bound is the hold-out the site declared (rows validated minus training rows): honest
    replies sit exactly on it and every site is in the global metric."""
    _, recorder = _run(healthcare, in_process_channel(healthcare, tmp_path), _config(), "honest")
    for record in recorder.rounds:
        assert sorted(record.metrics.per_site) == SITES


# --- statistics ------------------------------------------------------------------------------


# A forgery alters the (deep-copied) statistics in place, or returns a new reply: messages are frozen.
Change = Callable[[PrepareReply], PrepareReply | None]


def _forged_statistics(change: Change) -> Forge:
    def forge(reply: Message) -> Message:
        if not isinstance(reply, PrepareReply) or reply.statistics is None:
            return reply
        forged = reply.model_copy(deep=True)
        return change(forged) or forged

    return forge


def _numeric(reply: PrepareReply, **values: float) -> None:
    assert reply.statistics is not None
    reply.statistics.numeric["age"] = reply.statistics.numeric["age"].model_copy(update=values)


def _first_label(reply: PrepareReply, count: int) -> None:
    assert reply.statistics is not None
    label = next(iter(reply.statistics.label_counts))
    reply.statistics.label_counts[label] = count


def _no_statistics(reply: PrepareReply) -> PrepareReply:
    return reply.model_copy(update={"statistics": None})


def _more_training_rows_than_validated(reply: PrepareReply) -> PrepareReply:
    return reply.model_copy(update={"summary": reply.summary.model_copy(update={"rows": 10})})


STATISTICS_FORGERIES: dict[str, Change] = {
    "a NaN sum": lambda reply: _numeric(reply, total=math.nan),
    "an infinite sum of squares": lambda reply: _numeric(reply, total_sq=math.inf),
    "a negative count": lambda reply: _numeric(reply, count=-50),
    "a negative missing count": lambda reply: _numeric(reply, missing=-1),
    "a negative class count": lambda reply: _first_label(reply, -1000),
    "counts that do not add up to its rows": lambda reply: _numeric(reply, count=10**9),
    "no statistics at all": _no_statistics,
    "more training rows than it validated": _more_training_rows_than_validated,
}
# What the reason names besides the site: the field that cannot be right.
FIELD_NAMED = {
    "a NaN sum": "'age'",
    "an infinite sum of squares": "'age'",
    "a negative count": "'age'",
    "a negative missing count": "'age'",
    "a negative class count": "class counts",
    "counts that do not add up to its rows": "'age'",
    "no statistics at all": "no statistics",
    "more training rows than it validated": "training rows",
}


@pytest.mark.parametrize("forgery", sorted(STATISTICS_FORGERIES))
def test_forged_statistics_exclude_the_site_before_the_preprocessing_is_fitted(
    forgery: str, healthcare: Domain, tmp_path: Path
) -> None:
    """Before: NaN or infinite sums became the shared preprocessing's mean and scale (every model
    input NaN, the run ended), and negative counts entered it unchecked."""
    honest = in_process_channel(healthcare, tmp_path / "honest")
    silent_outcome, silent = _run(
        healthcare, HostileSite(honest, HOSTILE, _silent(PrepareReply)), _config(), "silent"
    )
    forged = HostileSite(
        in_process_channel(healthcare, tmp_path / "forged"),
        HOSTILE,
        _forged_statistics(STATISTICS_FORGERIES[forgery]),
    )
    outcome, attacked = _run(healthcare, forged, _config(), "forged")

    assert attacked.preprocessing is not None and silent.preprocessing is not None
    assert attacked.preprocessing.preprocessor == silent.preprocessing.preprocessor
    assert outcome.eligible == silent_outcome.eligible == [s for s in SITES if s != HOSTILE]
    (reason,) = outcome.excluded[HOSTILE]
    assert repr(HOSTILE) in reason and FIELD_NAMED[forgery] in reason, reason
    assert outcome.final_metrics == silent_outcome.final_metrics


# --- authentication ----------------------------------------------------------------------------


def test_with_authentication_required_a_site_without_a_registered_key_shapes_nothing(
    healthcare: Domain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: a site whose public key the coordinator lacked lost only its updates: its statistics
    shaped the shared preprocessing and its metrics counted in the global ones and `worst/…`."""
    keys = tmp_path / "keys"  # the coordinator's key and registered public keys (and the others' own keys)
    for owner in [COORDINATOR, *SITES]:
        if owner != HOSTILE:
            create_site_keys(keys, owner)
    create_site_keys(tmp_path / "own", HOSTILE)  # hungary signs, but nobody registered its key
    shutil.copy(keys / f"{COORDINATOR}.pub", tmp_path / "own")  # it trusts the coordinator

    def with_keys(channel: InProcessChannel) -> InProcessChannel:
        agents = {
            site: SiteAgent(
                dataclasses.replace(agent.settings, keys_dir=tmp_path / "own" if site == HOSTILE else keys)
            )
            for site, agent in channel.agents.items()
        }
        return InProcessChannel(agents)

    config = _config(authentication={"required": True, "keys_dir": str(keys)})
    silent_outcome, silent = _run(
        healthcare,
        HostileSite(
            with_keys(in_process_channel(healthcare, tmp_path / "a")), HOSTILE, _silent(PrepareReply)
        ),
        config,
        "silent",
    )
    channel = HostileSite(with_keys(in_process_channel(healthcare, tmp_path / "b")), HOSTILE, lambda r: r)
    outcome, recorder = _run(healthcare, channel, config, "keyless")

    (reason,) = outcome.excluded[HOSTILE]  # the authenticated channel's: it never called the site
    assert repr(HOSTILE) in reason and f"{HOSTILE}.pub" in reason, reason
    assert outcome.eligible == [s for s in SITES if s != HOSTILE]
    assert channel.requests == []  # never asked anything: its statistics and metrics cannot count
    assert recorder.preprocessing is not None and silent.preprocessing is not None
    assert recorder.preprocessing.preprocessor == silent.preprocessing.preprocessor
    assert HOSTILE not in {row["site"] for row in recorder.preprocessing.sites}
    for record in recorder.rounds:
        assert HOSTILE not in record.metrics.per_site and HOSTILE not in record.participants
        assert HOSTILE not in record.dropped
        assert all(site != HOSTILE for site, _ in record.metrics.worst.values())
    assert outcome.final_metrics == silent_outcome.final_metrics
