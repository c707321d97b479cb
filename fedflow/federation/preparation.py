"""Phase 1: every site validates its own rows and shares only aggregates; failing sites are left out."""

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from fedflow.errors import InsufficientSitesError
from fedflow.federation.channel import SiteChannel, failure_reason, gather
from fedflow.federation.claims import holdout_rows, statistics_problems
from fedflow.federation.plan import FederationPlan
from fedflow.federation.recorder import PreparationRecord, Recorder
from fedflow.messages import PrepareReply, PrepareRequest
from fedflow.tabular import SiteStatistics
from fedflow.tasks import get_task
from fedflow.validation_summary import failure_summary

Log = logging.Logger | logging.LoggerAdapter  # type: ignore[type-arg]


@dataclass(frozen=True)
class Preparation:
    """Which sites may train, why the others may not, and the eligible sites' aggregates."""

    eligible: list[str]
    excluded: dict[str, list[str]]
    statistics: dict[str, SiteStatistics]
    holdout_rows: dict[str, int] = field(default_factory=dict)  # declared: bounds evaluation counts


def _replies(plan: FederationPlan, channel: SiteChannel, log: Log) -> dict[str, PrepareReply]:
    """Each site's reply, or one that excludes it when its call failed (not deployed, timed out)."""
    config = plan.config
    request = PrepareRequest(
        federation_id=plan.federation_id,
        model_sha256=plan.domain.model_sha256,
        holdout_fraction=config.holdout_fraction,
        seed=config.seed,
    )
    replies, errors = gather(channel.send(dict.fromkeys(plan.sites, request)), PrepareReply)
    out: dict[str, PrepareReply] = {}
    for site in plan.sites:
        if site in replies:
            # Identity comes from the channel, not from what a site writes about itself.
            summary = replies[site].summary.model_copy(update={"site": site})
            out[site] = replies[site].model_copy(update={"summary": summary})
        else:
            reason = failure_reason(errors[site], "validation step")
            log.warning("site %s could not be prepared: %s", site, reason)
            out[site] = PrepareReply(summary=failure_summary(site, reason))
    return out


def _same_base_model(replies: Mapping[str, PrepareReply], plan: FederationPlan) -> dict[str, PrepareReply]:
    """Exclude sites that load another base model than the coordinator's: adapters fit one model."""
    base = get_task(plan.domain.spec.task).frozen_base(plan.domain.spec)
    if base is None:
        return dict(replies)
    out = {}
    for site, reply in replies.items():
        digest = reply.base_model_sha256
        if reply.summary.success and digest is not None and digest != base.sha256:
            reason = (
                f"site {site!r} holds another base model (sha256 {digest[:12]}…; the federation's is "
                f"{base.sha256[:12]}…): install the same model files at the site"
            )
            reply = PrepareReply(summary=failure_summary(site, reason))
        out[site] = reply
    return out


def _believable_statistics(
    replies: Mapping[str, PrepareReply], plan: FederationPlan
) -> dict[str, PrepareReply]:
    """Exclude, before anything is fitted, sites whose aggregates are non-finite, negative or inconsistent."""
    spec = plan.domain.spec
    task = get_task(spec.task)
    out = {}
    for site, reply in replies.items():
        problems = statistics_problems(site, reply, spec, task) if reply.summary.success else []
        if problems:
            # One such site would otherwise shape (or, NaN, poison) everyone's preprocessing.
            reason = f"site {site!r} cannot shape the shared preprocessing: " + "; ".join(
                problem.removeprefix(f"site {site!r}: ") for problem in problems
            )
            reply = PrepareReply(summary=reply.summary.model_copy(update={"success": False, "error": reason}))
        out[site] = reply
    return out


def prepare_sites(plan: FederationPlan, channel: SiteChannel, recorder: Recorder, log: Log) -> Preparation:
    """Ask every site to prepare; record who passed; stop when fewer than `min_sites` did."""
    replies = _believable_statistics(_same_base_model(_replies(plan, channel, log), plan), plan)
    summaries = [reply.summary for reply in replies.values()]
    excluded = {site: reply.summary.reasons() for site, reply in replies.items() if not reply.summary.success}
    eligible = [site for site, reply in replies.items() if reply.summary.success]
    for site, reasons in excluded.items():
        log.warning("site %s excluded from the run: %s", site, "; ".join(reasons))
    recorder.sites_prepared(PreparationRecord(summaries=summaries, eligible=eligible, excluded=excluded))
    if len(eligible) < plan.config.min_sites:
        raise InsufficientSitesError(
            f"only {len(eligible)} site(s) passed validation ({', '.join(eligible) or 'none'}) but "
            f"min_sites is {plan.config.min_sites}; excluded: "
            + "; ".join(f"{site}: {' / '.join(reasons)}" for site, reasons in excluded.items())
        )
    statistics = {
        site: reply.statistics
        for site, reply in replies.items()
        if reply.statistics is not None and site in eligible
    }
    declared = {site: holdout_rows(replies[site]) for site in statistics}
    return Preparation(
        eligible=eligible,
        excluded=excluded,
        statistics=statistics,
        holdout_rows={site: rows for site, rows in declared.items() if rows is not None},
    )
