"""The federation driver: the round protocol from preparation to audit, against a channel and a recorder."""

import logging

from fedflow.checkpoint import RoundCheckpoint
from fedflow.federation.attendance import Attendance
from fedflow.federation.audit import membership_audit
from fedflow.federation.authenticated_channel import authenticated
from fedflow.federation.channel import SiteChannel
from fedflow.federation.plan import FederationOutcome, FederationPlan
from fedflow.federation.preparation import prepare_sites
from fedflow.federation.recorder import Recorder, RoundRecord
from fedflow.federation.round import RoundOutcome, run_round
from fedflow.federation.running import RunningFederation
from fedflow.federation.setup import set_up
from fedflow.federation.state import FederationState

Log = logging.Logger | logging.LoggerAdapter  # type: ignore[type-arg]


def _state(running: RunningFederation, round_number: int) -> FederationState:
    """The checkpoint of the round just completed (the recorder adds what it tracks, e.g. the champion)."""
    plan = running.plan
    checkpoint = RoundCheckpoint(
        federation_id=plan.federation_id,
        domain=plan.domain.name,
        round=round_number,
        mlflow_run_id=plan.tracking_run_id,
        config=plan.config.model_dump(),
        sites_file=plan.sites_file,
        eligible=running.eligible,
        excluded=running.excluded,
        preprocessor=running.preprocessor,
        class_weights=running.class_weights,
        champion=None,
        privacy_history=list(running.accountant.history),
        last_accepted=dict(running.last_accepted),
        history=list(running.history),
    )
    # Copies: the strategy keeps stepping while the recorder persists this round in the background.
    strategy_state = {k: v.copy() for k, v in running.strategy.state().items()}
    return FederationState(
        checkpoint=checkpoint,
        weights=running.weights,
        strategy_state=strategy_state,
        noise_key=running.noise_key,
    )


def _record(running: RunningFederation, round_number: int, outcome: RoundOutcome, recorder: Recorder) -> None:
    running.history.append(outcome.logged)
    running.completed = round_number
    running.final_metrics = dict(outcome.metrics.mean)
    running.per_site = outcome.metrics.per_site
    recorder.round_completed(
        RoundRecord(
            state=_state(running, round_number),
            weights_payload=outcome.weights_payload,
            metrics=outcome.metrics,
            logged=dict(outcome.logged),
            participants=outcome.participants,
            dropped=outcome.dropped,
            champion_metric=running.champion_metric,
            higher_is_better=running.higher_is_better,
            epsilon=running.accountant.epsilon if running.private else None,
            champion_candidate=outcome.champion_candidate,
        )
    )


def run_federation(
    plan: FederationPlan, *, channel: SiteChannel, recorder: Recorder, log: Log
) -> FederationOutcome:
    """Prepare the sites, agree on preprocessing, run the rounds, audit; every step recorded.

    With `authentication.required` every request is signed and every reply checked here, whatever
    the channel: a site that cannot authenticate is excluded at preparation.
    """
    config = plan.config
    channel = authenticated(channel, config.authentication, plan.sites)
    running = set_up(plan, prepare_sites(plan, channel, recorder, log), recorder, log)
    running.attendance = Attendance(max_missed_calls=config.max_missed_calls)
    log.info(
        "global metrics and the champion compare the population: the %d eligible site(s) not left out "
        "for missed calls (%s); a round some of them did not evaluate is never the champion",
        len(running.eligible),
        ", ".join(running.eligible),
    )
    for round_number in range(running.completed + 1, config.rounds + 1):
        outcome = run_round(running, round_number, channel, recorder, log)
        if outcome is None:
            break
        _record(running, round_number, outcome, recorder)
    recorder.flush()  # every round's version, metrics and checkpoint are recorded before the end
    audit: dict[str, dict[str, float]] = {}
    if config.audit and running.completed > 0 and config.holdout_fraction > 0:
        audit = membership_audit(running, channel, log)
        recorder.audit_completed(audit, step=running.completed)
    result = FederationOutcome(
        rounds_completed=running.completed,
        champion_metric=running.champion_metric,
        eligible=running.eligible,
        excluded=running.excluded,
        final_metrics=running.final_metrics,
        per_site=running.per_site,
        history=running.history,
        epsilon=running.accountant.epsilon if running.private else None,
        audit=audit,
    )
    recorder.finished(result)
    return result
