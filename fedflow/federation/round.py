"""One round: sample -> broadcast -> train -> check -> aggregate -> evaluate -> record."""

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from fedflow.errors import InsufficientSitesError
from fedflow.federation.channel import MissedCall, ReplyHandle, SiteChannel, failure_reason, gather
from fedflow.federation.claims import evaluation_problem
from fedflow.federation.recorder import Note, Recorder
from fedflow.federation.running import RunningFederation
from fedflow.federation.secure_round import (
    AGGREGATE_SITE,
    OpenedRound,
    SecureRoundSettings,
    close_secure_round,
    open_secure_round,
)
from fedflow.messages import EvaluateReply, EvaluateRequest, SiteRows, TrainReply, TrainRequest
from fedflow.params import encode
from fedflow.privacy.central_noise import central_noise_source, privatise
from fedflow.rounds import (
    LISTED_SITES,
    Expected,
    RoundMetrics,
    check_masked_update,
    check_update,
    round_metrics,
)
from fedflow.sampling import sample_sites
from fedflow.seeding import derive_seed
from fedflow.strategies.base import join_payload, split_payload
from fedflow.update import DecodedUpdate

Log = logging.Logger | logging.LoggerAdapter  # type: ignore[type-arg]


@dataclass
class Collected:
    """The round's updates after checking: kept ones, what each contributor reported, and drops."""

    accepted: list[DecodedUpdate] = field(default_factory=list)
    masked: dict[str, tuple[np.ndarray, int]] = field(default_factory=dict)
    reported: dict[str, tuple[dict[str, float], int]] = field(default_factory=dict)  # metrics, examples
    dropped: dict[str, str] = field(default_factory=dict)
    bytes_received: int = 0
    dense_bytes: int = 0  # accepted deltas uncompressed
    accepted_bytes: int = 0  # ...and as sent


@dataclass(frozen=True)
class RoundOutcome:
    """What a completed round hands to the recorder."""

    metrics: RoundMetrics
    logged: dict[str, float]
    participants: list[str]
    dropped: dict[str, str]
    weights_payload: bytes
    champion_candidate: bool = True  # evaluated by every site of the population (see `_population`)


def rows_of(running: RunningFederation) -> SiteRows:
    """Which rows the sites work on: the split they made at preparation, and the shared preprocessing."""
    config = running.plan.config
    return SiteRows(
        holdout_fraction=config.holdout_fraction, seed=config.seed, preprocessor=running.preprocessor
    )


def budget_allows(
    running: RunningFederation, round_number: int, sample_rate: float, recorder: Recorder, log: Log
) -> bool:
    """False when this round would spend more privacy than the target: the run ends cleanly."""
    privacy = running.plan.config.privacy
    if not running.private or privacy.target_epsilon is None:
        return True
    next_epsilon = running.accountant.epsilon_if(
        noise_multiplier=privacy.noise_multiplier, sample_rate=sample_rate
    )
    if next_epsilon <= privacy.target_epsilon:
        return True
    log.warning(
        "privacy budget: round %d would spend epsilon %.3f > target %.3f; stopping after %d",
        round_number,
        next_epsilon,
        privacy.target_epsilon,
        round_number - 1,
    )
    recorder.note(Note(tags={"fedflow.stopped": f"privacy budget reached after round {round_number - 1}"}))
    return False


def _open_secure(
    running: RunningFederation, round_number: int, chosen: list[str], channel: SiteChannel
) -> OpenedRound | None:
    config = running.plan.config
    if not config.secure_aggregation.enabled:
        return None
    settings = _secure_settings(running, round_number)
    return open_secure_round(chosen, settings, channel)


def _secure_settings(running: RunningFederation, round_number: int) -> SecureRoundSettings:
    config = running.plan.config
    return SecureRoundSettings(
        federation_id=running.plan.federation_id,
        round=round_number,
        config=config.secure_aggregation,
        # Under DP every site weighs the same: a clipped delta must move the mean by at most C/m.
        weighted_by_examples=not running.private
        and getattr(running.strategy, "weighting", "examples") == "examples",
        min_sites=config.min_sites,
        signing_keys=running.public_keys if config.authentication.required else None,
    )


def _train_requests(
    running: RunningFederation,
    round_number: int,
    trainers: list[str],
    sites_in_round: int,
    opened: OpenedRound | None,
) -> dict[str, TrainRequest]:
    config, plan = running.plan.config, running.plan
    payload = encode(join_payload(running.weights, split_payload(running.strategy.broadcast())[1]))
    common = TrainRequest(
        federation_id=plan.federation_id,
        model_sha256=plan.domain.model_sha256,
        round=round_number,
        rows=rows_of(running),
        global_payload=payload,
        local=config.local,
        strategy=config.strategy,
        class_weights=running.class_weights,
        privacy=config.privacy,
        sites_in_round=sites_in_round,
        secure=opened.plan if opened is not None else None,
        compression=config.compression,
        attack=config.attack,
    )
    return {
        site: common.model_copy(update={"accepted_round": running.last_accepted.get(site, 0)})
        for site in trainers
    }


def _check(
    running: RunningFederation,
    site: str,
    reply: TrainReply,
    collected: Collected,
    secure: bool,
) -> None:
    """Check one update; add it to what the round keeps (raises to drop it). With authentication
    required, the channel has already checked the site signed this reply for this call."""
    config = running.plan.config
    max_examples = running.train_rows.get(site)
    if secure:
        vector = check_masked_update(
            site,
            reply,
            running.weights,
            max_payload_bytes=config.checks.max_payload_bytes,
            max_examples=max_examples,
        )
        collected.masked[site] = (vector, reply.num_examples)
        return
    expected = Expected(
        extras=running.strategy.site_extras,
        codec=running.codec,
        max_payload_bytes=config.checks.max_payload_bytes,
        max_update_norm=config.checks.max_update_norm,
        max_examples=max_examples,
    )
    update = check_update(site, reply, running.weights, expected)
    collected.accepted.append(update)
    # Re-encode only when a codec changed the payload: uncompressed, it is its own size.
    compressed = running.codec.name != "none"
    collected.dense_bytes += len(encode(update.delta)) if compressed else len(reply.payload)
    collected.accepted_bytes += len(reply.payload)


def collect_updates(
    running: RunningFederation, round_number: int, handles: dict[str, ReplyHandle], opened: OpenedRound | None
) -> Collected:
    """Every update checked; a failing or crashed site is dropped with its reason, the round goes on."""
    collected = Collected(dropped=dict(opened.failed) if opened is not None else {})
    replies, errors = gather(handles, TrainReply)
    for site in handles:
        try:
            if site in errors:
                raise errors[site]
            reply = replies[site]
            collected.bytes_received += len(reply.payload)
            _check(running, site, reply, collected, opened is not None)
            collected.reported[site] = (dict(reply.metrics), reply.num_examples)
            running.last_accepted[site] = round_number
        except Exception as error:  # a crashed site must not end the round for the others
            collected.dropped[site] = failure_reason(error, "step")
        running.attendance.record(site, errors.get(site))
    return collected


def _aggregate(
    running: RunningFederation,
    round_number: int,
    collected: Collected,
    opened: OpenedRound | None,
    chosen: list[str],
    channel: SiteChannel,
    log: Log,
) -> None:
    """Unmask (secure aggregation), add central noise (DP), and let the strategy step."""
    accepted = collected.accepted
    if opened is not None:
        # The coordinator learns only the survivors' sum; it becomes one mean update.
        settings = _secure_settings(running, round_number)
        accepted = [
            close_secure_round(
                opened, collected.masked, settings=settings, channel=channel, like=running.weights, log=log
            )
        ]
    if running.private:
        privacy = running.plan.config.privacy
        summed = len(collected.reported) if opened is not None else 0
        accepted = [
            privatise(
                update,
                privacy,
                noise=central_noise_source(
                    privacy,
                    key=running.noise_key,
                    seed=running.plan.config.seed,
                    round_number=round_number,
                    site=update.site,
                ),
                sites_in_round=len(chosen),
                summed=summed if update.site == AGGREGATE_SITE else 0,
            )
            for update in accepted
        ]
        running.accountant.record(
            noise_multiplier=privacy.noise_multiplier, sample_rate=len(chosen) / len(running.present)
        )
    running.weights = running.strategy.aggregate(round_number, running.weights, accepted)


def evaluate(
    running: RunningFederation, round_number: int, payload: bytes, channel: SiteChannel, log: Log
) -> RoundMetrics:
    """Every eligible site scores the new global model on its hold-out (none without hold-outs)."""
    config = running.plan.config
    request = EvaluateRequest(
        federation_id=running.plan.federation_id,
        model_sha256=running.plan.domain.model_sha256,
        round=round_number,
        rows=rows_of(running),
        global_payload=payload,
        local=config.local,
        personalization_steps=config.personalization_steps,
    )
    sites = running.eligible if config.holdout_fraction > 0 else []
    replies, errors = gather(channel.send(dict.fromkeys(sites, request)), EvaluateReply)
    for site, error in errors.items():
        log.warning("round %d: evaluation at site %r failed (%s)", round_number, site, type(error).__name__)
    for site in sites:  # every round's evaluation also asks the left-out sites: an answer brings one back
        running.attendance.record(site, errors.get(site))
    task = running.task
    per_site = {}
    for site, reply in replies.items():
        # A claim outside what the site declared weighs as much as no reply: it cannot move the champion.
        problem = evaluation_problem(site, reply.metrics, running.holdout_rows.get(site), task)
        if problem is None:
            per_site[site] = reply.metrics
        else:
            log.warning("round %d: evaluation of site %r left out: %s", round_number, site, problem)
            running.attendance.failed(site, MissedCall(problem))  # a claim refused counts as no answer
    names = [
        *task.metric_names,
        *(f"personalised/{m}" for m in task.metric_names if config.personalization_steps),
    ]
    metrics = round_metrics(per_site, names)
    return RoundMetrics(
        mean=task.global_metrics(metrics.mean), per_site=metrics.per_site, worst=metrics.worst
    )


def _logged(
    running: RunningFederation,
    collected: Collected,
    metrics: RoundMetrics,
    opened: OpenedRound | None,
    bytes_sent: int,
) -> dict[str, float]:
    """The round's flat metrics: evaluation, training loss, bytes, participation, privacy."""
    reported = collected.reported
    train_loss = sum(m.get("train_loss", math.nan) * n for m, n in reported.values()) / sum(
        n for _, n in reported.values()
    )
    logged = {
        **(metrics.flat() if len(metrics.per_site) <= LISTED_SITES else metrics.flat_summary()),
        "train/loss": train_loss,
        "network/bytes_sent": float(bytes_sent),
        "network/bytes_received": float(collected.bytes_received),
        "network/uplink_compression": collected.dense_bytes / collected.accepted_bytes
        if collected.accepted_bytes
        else 1.0,
        "sites/participants": float(len(reported)),
        "sites/dropped": float(len(collected.dropped)),
    }
    if running.private:
        logged["privacy/epsilon"] = running.accountant.epsilon
    if opened is not None:
        logged["secure_aggregation/threshold"] = float(opened.plan.threshold)
        logged["secure_aggregation/members"] = float(len(opened.plan.members))
    site_epsilons = {site: m["dp_sgd_epsilon"] for site, (m, _) in reported.items() if "dp_sgd_epsilon" in m}
    if site_epsilons:
        logged.update({f"site/{s}/dp_sgd_epsilon": e for s, e in site_epsilons.items()})
        logged["privacy/dp_sgd_epsilon_max"] = max(site_epsilons.values())
    return logged


def _present(running: RunningFederation, round_number: int) -> list[str]:
    """The eligible sites not left out for missing calls; too few of them end the run."""
    present = running.attendance.present(running.eligible)
    minimum = running.plan.config.min_sites
    if len(present) < minimum:
        raise InsufficientSitesError(
            f"round {round_number}: only {len(present)} site(s) still answer but min_sites is {minimum}; "
            "left out: " + "; ".join(f"{s}: {r}" for s, r in running.attendance.left_out.items())
        )
    return present


def _population(
    running: RunningFederation, round_number: int, metrics: RoundMetrics, logged: dict[str, float], log: Log
) -> bool:
    """Whether the round's global metrics cover its population: every eligible site not left out.

    Only such rounds are champion candidates, so the champion is never picked from a mean over
    fewer sites (one missing weak site would flatter a round). Counts go to the round's metrics.
    """
    population = running.attendance.present(running.eligible)
    if not running.plan.config.holdout_fraction or not metrics.per_site:
        return True
    missing = [site for site in population if site not in metrics.per_site]
    logged["sites/population"] = float(len(population))
    logged["sites/evaluated"] = float(len(metrics.per_site))
    if running.attendance.left_out:
        logged["sites/left_out"] = float(len(running.attendance.left_out))
    if missing:
        log.warning(
            "round %d: evaluated by %d of the %d sites of the population (missing: %s): recorded, but not "
            "a champion candidate",
            round_number,
            len(population) - len(missing),
            len(population),
            ", ".join(missing),
        )
    return not missing


def _attendance_news(running: RunningFederation, round_number: int, recorder: Recorder, log: Log) -> None:
    """Log and record the sites left out or back this round (MLflow tags, Prefect log)."""
    for news in running.attendance.take_news():
        log.warning("round %d: %s", round_number, news)
        site = news.split()[1]
        recorder.note(Note(tags={f"fedflow.attendance.{site}": f"round {round_number}: {news}"}))


def run_round(
    running: RunningFederation, round_number: int, channel: SiteChannel, recorder: Recorder, log: Log
) -> RoundOutcome | None:
    """Run one round; None when the privacy budget would be passed (the run ends before it)."""
    started = time.perf_counter()
    config = running.plan.config
    present = running.present = _present(running, round_number)
    chosen = sample_sites(
        present,
        fraction=config.sites_fraction,
        minimum=config.min_sites_per_round,
        seed=derive_seed(config.seed, "sample", round_number),
    )
    if not budget_allows(running, round_number, len(chosen) / len(present), recorder, log):
        return None
    opened = _open_secure(running, round_number, chosen, channel)
    trainers = list(opened.plan.members) if opened is not None else chosen
    requests = _train_requests(running, round_number, trainers, len(chosen), opened)
    collected = collect_updates(running, round_number, channel.send(requests), opened)
    for site, reason in collected.dropped.items():
        log.warning("round %d: update of site %s dropped: %s", round_number, site, reason)
    if len(collected.reported) < config.min_sites:
        raise InsufficientSitesError(
            f"round {round_number}: only {len(collected.reported)} valid update(s) but min_sites is "
            f"{config.min_sites}; dropped: {collected.dropped}"
        )
    _aggregate(running, round_number, collected, opened, chosen, channel, log)
    payload = encode(running.weights)
    metrics = evaluate(running, round_number, payload, channel, log)
    broadcast = len(next(iter(requests.values())).global_payload) if requests else 0
    evaluated = len(running.eligible) if config.holdout_fraction > 0 else 0
    logged = _logged(running, collected, metrics, opened, broadcast * len(chosen) + len(payload) * evaluated)
    logged["time/round_seconds"] = time.perf_counter() - started  # the round's critical path
    candidate = _population(running, round_number, metrics, logged, log)
    _attendance_news(running, round_number, recorder, log)
    return RoundOutcome(
        metrics=metrics,
        logged=logged,
        participants=list(collected.reported),
        dropped=dict(collected.dropped),
        weights_payload=payload,
        champion_candidate=candidate,
    )
