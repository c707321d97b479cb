"""After training: every site attacks the final model with its own rows (membership inference)."""

import logging

from fedflow.federation.channel import SiteChannel, gather
from fedflow.federation.round import rows_of
from fedflow.federation.running import RunningFederation
from fedflow.messages import AuditReply, AuditRequest
from fedflow.params import encode

Log = logging.Logger | logging.LoggerAdapter  # type: ignore[type-arg]


def membership_audit(
    running: RunningFederation, channel: SiteChannel, log: Log
) -> dict[str, dict[str, float]]:
    """Each eligible site's attack scores; a failing site is left out."""
    config = running.plan.config
    # Shadow models see the site's rows about as often as the federation did (capped for time).
    steps = config.local.max_steps
    shadow_config = config.local.model_copy(
        update={
            "epochs": min(config.rounds * config.local.epochs, 30),
            "max_steps": None if steps is None else min(config.rounds * steps, 300),
            "dp_sgd": None,
        }
    )
    request = AuditRequest(
        federation_id=running.plan.federation_id,
        model_sha256=running.plan.domain.model_sha256,
        rows=rows_of(running),
        final_payload=encode(running.weights),
        reference_payload=running.reference_payload,
        shadow_models=config.audit_shadow_models,
        shadow_config=shadow_config,
    )
    replies, errors = gather(channel.send(dict.fromkeys(running.eligible, request)), AuditReply)
    for site, error in errors.items():
        log.warning("privacy audit at site %s failed (%s)", site, type(error).__name__)
    return {site: reply.scores for site, reply in replies.items()}
