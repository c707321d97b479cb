"""The coordinator's side of secure aggregation: phases 1-2 before training, phase 4 after.

The coordinator only routes public keys and encrypted shares between the sites and, at the
end, learns the sum of the surviving sites' weighted deltas: never one site's update.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fedflow.config import SecureAggregationConfig
from fedflow.errors import InsufficientSitesError
from fedflow.federation.channel import SiteChannel, failure_reason, gather
from fedflow.messages import (
    AdvertiseReply,
    AdvertiseRequest,
    ShareReply,
    ShareRequest,
    UnmaskReply,
    UnmaskRequest,
)
from fedflow.params import NamedArrays
from fedflow.secure_aggregation.advertised_keys import key_problem, signature_problem
from fedflow.secure_aggregation.masking import SecureRoundPlan, mean_delta_from_sum, round_context
from fedflow.secure_aggregation.protocol import PublicKeys, threshold_for, unmask_sum
from fedflow.update import DecodedUpdate

AGGREGATE_SITE = "secure-aggregate"
Log = logging.Logger | logging.LoggerAdapter  # type: ignore[type-arg]


@dataclass(frozen=True)
class SecureRoundSettings:
    """What the coordinator needs to open a round: which round, how many dropouts, how weighted."""

    federation_id: str
    round: int
    config: SecureAggregationConfig
    weighted_by_examples: bool
    min_sites: int
    # authentication.required: each site's registered public key (None: advertised keys need no signature).
    signing_keys: Mapping[str, Ed25519PublicKey | None] | None = None


@dataclass(frozen=True)
class OpenedRound:
    """A round after key advertisement and sharing: the plan the sites mask with, and the mailboxes."""

    plan: SecureRoundPlan
    inbox: dict[str, dict[str, bytes]]  # recipient -> sender -> encrypted shares
    failed: dict[str, str]


@dataclass(frozen=True)
class Roster:
    """The sites whose advertised keys were accepted, their signatures, and why others were not."""

    keys: dict[str, PublicKeys]
    signatures: dict[str, bytes]
    excluded: dict[str, str]


def accepted_roster(advertised: Mapping[str, AdvertiseReply], settings: SecureRoundSettings) -> Roster:
    """Phase 1's replies checked one by one: a malformed key, or (with authentication required) keys
    not signed by the site's registered key, exclude that site from the round, never the round."""
    roster = Roster(keys={}, signatures={}, excluded={})
    for site, reply in advertised.items():
        problem = key_problem(reply.public_keys)
        if problem is None and settings.signing_keys is not None:
            problem = signature_problem(
                settings.signing_keys.get(site),
                reply.signature,
                federation_id=settings.federation_id,
                round_number=settings.round,
                site=site,
                keys=reply.public_keys,
            )
        if problem is not None:
            roster.excluded[site] = f"excluded from secure aggregation: {problem}"
            continue
        roster.keys[site] = reply.public_keys
        if reply.signature:
            roster.signatures[site] = reply.signature
    return roster


def open_secure_round(chosen: list[str], settings: SecureRoundSettings, channel: SiteChannel) -> OpenedRound:
    """Phases 1 and 2: collect and check the sites' public keys, then route their encrypted shares."""
    context = round_context(settings.federation_id, settings.round)
    advertise = AdvertiseRequest(federation_id=settings.federation_id, round=settings.round)
    advertised, errors = gather(channel.send(dict.fromkeys(chosen, advertise)), AdvertiseReply)
    accepted = accepted_roster(advertised, settings)
    roster = accepted.keys
    failed = {site: _failure(error) for site, error in errors.items()} | accepted.excluded
    threshold = threshold_for(len(roster), settings.config.max_dropouts)
    _require(len(roster), max(settings.min_sites, threshold), settings.round, "advertised valid keys")
    request = ShareRequest(
        federation_id=settings.federation_id,
        round=settings.round,
        roster=roster,
        threshold=threshold,
        context=context,
        signatures=accepted.signatures,
        require_signatures=settings.signing_keys is not None,
    )
    shared, errors = gather(channel.send(dict.fromkeys(roster, request)), ShareReply)
    failed.update({site: _failure(error) for site, error in errors.items()})
    inbox: dict[str, dict[str, bytes]] = {site: {} for site in roster}
    members: list[str] = []
    for site, reply in shared.items():
        if set(reply.ciphertexts) != set(roster):
            failed[site] = "sent shares for sites outside the roster"
            continue
        members.append(site)
        for recipient, blob in reply.ciphertexts.items():
            inbox[recipient][site] = blob
    _require(len(members), max(settings.min_sites, threshold), settings.round, "shared their secrets")
    plan = SecureRoundPlan(
        roster=roster,
        members=tuple(sorted(members)),
        threshold=threshold,
        context=context,
        fraction_bits=settings.config.fraction_bits,
        weighted_by_examples=settings.weighted_by_examples,
    )
    return OpenedRound(plan=plan, inbox=inbox, failed=failed)


def close_secure_round(
    opened: OpenedRound,
    masked: Mapping[str, tuple[np.ndarray, int]],
    *,
    settings: SecureRoundSettings,
    channel: SiteChannel,
    like: NamedArrays,
    log: Log,
) -> DecodedUpdate:
    """Phase 4: ask the survivors for shares, unmask the sum, return it as one mean update.

    `masked` maps each surviving site to its checked field vector and example count.
    """
    plan = opened.plan
    survivors = sorted(masked)
    _require(len(survivors), plan.threshold, settings.round, "sent a valid masked update")
    requests = {
        site: UnmaskRequest(
            federation_id=settings.federation_id,
            round=settings.round,
            ciphertexts=opened.inbox[site],
            plan=plan,
            survivors=survivors,
        )
        for site in survivors
    }
    answered, errors = gather(channel.send(requests), UnmaskReply)
    for site, error in errors.items():
        log.warning("round %d: site %s did not answer unmasking: %s", settings.round, site, _failure(error))
    responses = {site: reply.shares for site, reply in answered.items()}
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
    delta = mean_delta_from_sum(total, total_weight=weight, fraction_bits=plan.fraction_bits, like=like)
    return DecodedUpdate(site=AGGREGATE_SITE, num_examples=examples, delta=delta)


def _failure(error: BaseException) -> str:
    return failure_reason(error, "secure-aggregation step")


def _require(available: int, needed: int, round_number: int, what: str) -> None:
    if available < needed:
        raise InsufficientSitesError(
            f"round {round_number}: only {available} site(s) {what}, but secure aggregation needs {needed} "
            "(min_sites, and the Shamir threshold from secure_aggregation.max_dropouts)"
        )
