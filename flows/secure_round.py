"""The coordinator's side of secure aggregation: run phases 1-2 before training, 4 after.

The coordinator only routes public keys and encrypted shares between the sites and, at the
end, learns the sum of the surviving sites' weighted deltas: never one site's update.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from fedflow.config import SecureAggregationConfig
from fedflow.errors import InsufficientSitesError
from fedflow.params import NamedArrays
from fedflow.secure_aggregation.masking import SecureRoundPlan, mean_delta_from_sum, round_context
from fedflow.secure_aggregation.protocol import PublicKeys, threshold_for, unmask_sum
from fedflow.update import DecodedUpdate
from flows.site_tasks import advertise_keys, reveal_for_unmasking, share_keys
from flows.transport import SiteTransport

AGGREGATE_SITE = "secure-aggregate"


@dataclass(frozen=True)
class OpenedRound:
    """A round after key advertisement and sharing: the plan the sites mask with, and the mailboxes."""

    plan: SecureRoundPlan
    inbox: dict[str, dict[str, bytes]]  # recipient -> sender -> encrypted shares
    failed: dict[str, str]


def _failure(error: BaseException) -> str:
    return f"secure aggregation step failed ({type(error).__name__}); see the site's log"


def open_secure_round(
    chosen: list[str],
    *,
    domain: str,
    transport: SiteTransport,
    federation_id: str,
    round_number: int,
    settings: SecureAggregationConfig,
    weighted_by_examples: bool,
    min_sites: int,
) -> OpenedRound:
    """Phases 1 and 2: collect the sites' public keys, then route their encrypted shares."""
    context = round_context(federation_id, round_number)
    failed: dict[str, str] = {}
    advertised = transport.map(
        advertise_keys, domain, chosen, federation_id=federation_id, round_number=round_number
    )
    roster: dict[str, PublicKeys] = {}
    for site, future in advertised.items():
        try:
            roster[site] = future.result()
        except Exception as error:
            failed[site] = _failure(error)
    threshold = threshold_for(len(roster), settings.max_dropouts)
    _require(len(roster), max(min_sites, threshold), round_number, "advertised keys")
    shared = transport.map(
        share_keys,
        domain,
        list(roster),
        federation_id=federation_id,
        round_number=round_number,
        roster=roster,
        threshold=threshold,
        context=context,
    )
    inbox: dict[str, dict[str, bytes]] = {site: {} for site in roster}
    members: list[str] = []
    for site, future in shared.items():
        try:
            ciphertexts = future.result()
        except Exception as error:
            failed[site] = _failure(error)
            continue
        if set(ciphertexts) != set(roster):
            failed[site] = "sent shares for sites outside the roster"
            continue
        members.append(site)
        for recipient, blob in ciphertexts.items():
            inbox[recipient][site] = blob
    _require(len(members), max(min_sites, threshold), round_number, "shared their secrets")
    plan = SecureRoundPlan(
        roster=roster,
        members=tuple(sorted(members)),
        threshold=threshold,
        context=context,
        fraction_bits=settings.fraction_bits,
        weighted_by_examples=weighted_by_examples,
    )
    return OpenedRound(plan=plan, inbox=inbox, failed=failed)


def close_secure_round(
    opened: OpenedRound,
    masked: dict[str, tuple[np.ndarray, int]],
    *,
    domain: str,
    transport: SiteTransport,
    federation_id: str,
    round_number: int,
    global_weights: NamedArrays,
    logger: Any,
) -> DecodedUpdate:
    """Phase 4: ask the survivors for shares, unmask the sum, return it as one mean update.

    `masked` maps each surviving site to its checked field vector and example count.
    """
    plan = opened.plan
    survivors = sorted(masked)
    _require(len(survivors), plan.threshold, round_number, "sent a valid masked update")
    futures = transport.map(
        reveal_for_unmasking,
        domain,
        survivors,
        per_site={site: {"ciphertexts": opened.inbox[site]} for site in survivors},
        federation_id=federation_id,
        round_number=round_number,
        plan=plan,
        survivors=survivors,
    )
    responses: dict[str, dict[str, bytes]] = {}
    for site, future in futures.items():
        try:
            responses[site] = future.result()
        except Exception as error:
            logger.warning(
                "round %d: site %s did not answer unmasking: %s", round_number, site, _failure(error)
            )
    masked_sum = np.zeros(next(iter(masked.values()))[0].shape, dtype=np.uint64)
    for vector, _ in masked.values():
        masked_sum = masked_sum + vector
    total = unmask_sum(
        masked_sum,
        responses=responses,
        roster=plan.roster,
        survivors=survivors,
        threshold=plan.threshold,
        context=plan.context,
        members=plan.members,
    )
    examples = sum(count for _, count in masked.values())
    weight = float(examples) if plan.weighted_by_examples else float(len(survivors))
    delta = mean_delta_from_sum(
        total, total_weight=weight, fraction_bits=plan.fraction_bits, like=global_weights
    )
    return DecodedUpdate(site=AGGREGATE_SITE, num_examples=examples, delta=delta)


def _require(available: int, needed: int, round_number: int, what: str) -> None:
    if available < needed:
        raise InsufficientSitesError(
            f"round {round_number}: only {available} site(s) {what}, but secure aggregation needs {needed} "
            "(min_sites, and the Shamir threshold from secure_aggregation.max_dropouts)"
        )
