"""Secure aggregation (Bonawitz et al. 2017): exact sums, dropout recovery, and what stays hidden."""

import numpy as np
import pytest

from fedflow.secure_aggregation.fixed_point import (
    FixedPointRangeError,
    decode_fixed_point,
    encode_fixed_point,
)
from fedflow.secure_aggregation.protocol import (
    RoundTerms,
    SecureAggregationError,
    SiteSecrets,
    expand_mask,
    mask_update,
    reveal_shares,
    share_secrets,
    threshold_for,
    unmask_sum,
)
from fedflow.secure_aggregation.shamir import combine_shares, split_secret

BITS = 24
CONTEXT = b"fed-test|round=3"


def _protocol(updates, *, max_dropouts, drop_after_sharing=(), silent_in_unmask=()):
    """Run all four phases over in-memory 'sites'; return (recovered sum, survivors)."""
    sites = sorted(updates)
    secrets = {site: SiteSecrets.generate() for site in sites}
    roster = {site: secrets[site].public() for site in sites}
    threshold = threshold_for(len(sites), max_dropouts)
    inbox: dict[str, dict[str, bytes]] = {site: {} for site in sites}
    for sender in sites:
        for recipient, blob in share_secrets(
            secrets[sender], site=sender, roster=roster, threshold=threshold, context=CONTEXT
        ).items():
            inbox[recipient][sender] = blob
    survivors = [s for s in sites if s not in drop_after_sharing]
    masked = {
        site: mask_update(
            encode_fixed_point(updates[site], fraction_bits=BITS, max_summands=len(sites)),
            secrets[site],
            site=site,
            roster=roster,
            context=CONTEXT,
        )
        for site in survivors
    }
    masked_sum = np.zeros_like(next(iter(masked.values())))
    for vector in masked.values():
        masked_sum = masked_sum + vector
    responses = {
        site: reveal_shares(
            secrets[site],
            site=site,
            ciphertexts=inbox[site],
            terms=RoundTerms(roster=roster, members=tuple(sites), threshold=threshold, context=CONTEXT),
            survivors=survivors,
        )
        for site in survivors
        if site not in silent_in_unmask
    }
    total = unmask_sum(
        masked_sum,
        responses=responses,
        roster=roster,
        survivors=survivors,
        threshold=threshold,
        context=CONTEXT,
    )
    return decode_fixed_point(total, fraction_bits=BITS), survivors, masked


def _updates(n, size=257, seed=0):
    rng = np.random.default_rng(seed)
    return {f"site-{i}": rng.normal(0, 3.0, size=size) for i in range(n)}


def test_unmasked_sum_equals_plain_sum_within_quantisation_error():
    updates = _updates(5)
    recovered, _, _ = _protocol(updates, max_dropouts=1)
    plain = sum(updates.values())
    assert np.max(np.abs(recovered - plain)) <= 5 * 2.0 ** -(BITS + 1)


@pytest.mark.parametrize("dropped", [("site-3",), ("site-0", "site-4")])
def test_up_to_max_dropouts_after_masking_still_give_the_survivors_sum(dropped):
    updates = _updates(6, seed=1)
    recovered, survivors, _ = _protocol(updates, max_dropouts=2, drop_after_sharing=dropped)
    plain = sum(updates[s] for s in survivors)
    assert set(survivors) == set(updates) - set(dropped)
    assert np.max(np.abs(recovered - plain)) <= 6 * 2.0 ** -(BITS + 1)


def test_a_survivor_silent_in_unmasking_is_covered_by_the_others_shares():
    updates = _updates(5, seed=2)
    recovered, _, _ = _protocol(updates, max_dropouts=1, silent_in_unmask=("site-2",))
    assert np.allclose(recovered, sum(updates.values()), atol=1e-6)


def test_more_dropouts_than_configured_stop_the_round_with_a_clear_error():
    updates = _updates(5, seed=3)
    with pytest.raises(SecureAggregationError, match="threshold is 4"):
        _protocol(updates, max_dropouts=1, drop_after_sharing=("site-1", "site-2"))


def test_a_masked_update_alone_does_not_reveal_the_update():
    zeros = {f"site-{i}": np.zeros(4096) for i in range(3)}
    _, _, masked = _protocol(zeros, max_dropouts=1)
    vector = masked["site-0"]
    # An all-zero update masks to values spread over the whole field: each bit is a coin flip.
    bits = np.unpackbits(vector.view(np.uint8))
    assert abs(bits.mean() - 0.5) < 0.01
    decoded = decode_fixed_point(vector, fraction_bits=BITS)
    assert np.median(np.abs(decoded)) > 1e9  # nowhere near the true values (all 0)


def test_fewer_than_threshold_shares_do_not_rebuild_the_seed():
    secret = bytes(range(32))
    shares = split_secret(secret, threshold=3, holders=5)
    assert combine_shares(shares[1:4], threshold=3) == secret
    guess = combine_shares(shares[:2], threshold=2)  # two shares treated as if enough
    assert guess != secret
    with pytest.raises(ValueError, match="cannot rebuild"):
        combine_shares(shares[:2], threshold=3)
    # A wrong seed unmasks to noise, not to the update.
    update = encode_fixed_point(np.ones(64), fraction_bits=BITS, max_summands=1)
    masked = update + expand_mask(secret, 64)
    wrongly_unmasked = decode_fixed_point(masked - expand_mask(guess, 64), fraction_bits=BITS)
    assert not np.allclose(wrongly_unmasked, 1.0)


def test_a_tampered_share_is_refused() -> None:
    sites = ["a", "b", "c"]
    secrets = {s: SiteSecrets.generate() for s in sites}
    roster = {s: secrets[s].public() for s in sites}
    inbox = {
        sender: share_secrets(secrets[sender], site=sender, roster=roster, threshold=2, context=CONTEXT)["b"]
        for sender in sites
    }
    forged = dict(inbox, a=inbox["a"][:-1] + bytes([inbox["a"][-1] ^ 1]))
    terms = RoundTerms(roster=roster, members=tuple(sites), threshold=2, context=CONTEXT)
    with pytest.raises(SecureAggregationError, match="does not authenticate"):
        reveal_shares(secrets["b"], site="b", ciphertexts=forged, terms=terms, survivors=sites)
    with pytest.raises(SecureAggregationError, match="does not authenticate"):  # replayed into another round
        replayed = RoundTerms(roster=roster, members=tuple(sites), threshold=2, context=b"fed-test|round=4")
        reveal_shares(secrets["b"], site="b", ciphertexts=inbox, terms=replayed, survivors=sites)


def test_sites_refuse_plans_that_would_expose_them() -> None:
    sites = ["a", "b", "c"]
    secrets = {s: SiteSecrets.generate() for s in sites}
    roster = {s: secrets[s].public() for s in sites}
    with pytest.raises(SecureAggregationError, match="strict majority"):
        share_secrets(secrets["a"], site="a", roster=roster, threshold=1, context=CONTEXT)
    update = encode_fixed_point(np.ones(8), fraction_bits=BITS, max_summands=3)
    with pytest.raises(SecureAggregationError, match="threshold is 2"):  # masking alone = no protection
        mask_update(
            update, secrets["a"], site="a", roster=roster, context=CONTEXT, members=["a"], threshold=2
        )
    inbox = {
        sender: share_secrets(secrets[sender], site=sender, roster=roster, threshold=2, context=CONTEXT)["b"]
        for sender in ["a", "b"]
    }
    with pytest.raises(SecureAggregationError, match="did not share"):  # c never shared: cannot survive
        reveal_shares(
            secrets["b"],
            site="b",
            ciphertexts=inbox,
            terms=RoundTerms(roster=roster, members=tuple(sites), threshold=2, context=CONTEXT),
            survivors=sites,
        )


def test_a_site_refuses_a_roster_it_did_not_share_under(healthcare, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from site_helpers import FEDERATION, prepared_agent, site_agent

    from fedflow.messages import AdvertiseRequest, ShareRequest, UnmaskRequest
    from fedflow.secure_aggregation.masking import SecureRoundPlan, round_context

    sites = ["cleveland", "hungary", "switzerland"]
    agents = {s: site_agent(healthcare, s, tmp_path / s) for s in sites}
    agents["hungary"], train = prepared_agent(healthcare, "hungary", tmp_path / "hungary")
    context = round_context(FEDERATION, 1)
    advertise = AdvertiseRequest(federation_id=FEDERATION, round=1)
    roster = {s: agents[s].advertise(advertise).public_keys for s in sites}
    inbox: dict[str, dict[str, bytes]] = {s: {} for s in sites}
    share = ShareRequest(federation_id=FEDERATION, round=1, roster=roster, threshold=2, context=context)
    for sender in sites:
        for recipient, blob in agents[sender].share(share).ciphertexts.items():
            inbox[recipient][sender] = blob
    honest = SecureRoundPlan(
        roster=roster,
        members=tuple(sites),
        threshold=2,
        context=context,
        fraction_bits=BITS,
        weighted_by_examples=True,
    )
    agents["hungary"].train(train.model_copy(update={"secure": honest}))  # it masks under the honest plan

    def unmask(plan: SecureRoundPlan) -> dict[str, bytes]:
        request = UnmaskRequest(
            federation_id=FEDERATION, round=1, ciphertexts=inbox["hungary"], plan=plan, survivors=sites
        )
        return agents["hungary"].unmask(request).shares

    with pytest.raises(SecureAggregationError, match="not the one it shared under"):
        unmask(honest.model_copy(update={"threshold": 3}))
    with pytest.raises(SecureAggregationError, match="another federation or round"):
        unmask(honest.model_copy(update={"context": round_context(FEDERATION, 2)}))
    assert set(unmask(honest)) == set(sites)
    with pytest.raises(Exception, match="holds no secure-aggregation keys"):  # it answers only once
        unmask(honest)


def test_fixed_point_refuses_values_that_could_wrap_the_sum():
    with pytest.raises(FixedPointRangeError, match="clip_norm"):
        encode_fixed_point(np.array([1e13]), fraction_bits=BITS, max_summands=10)
    with pytest.raises(FixedPointRangeError):
        encode_fixed_point(np.array([np.nan]), fraction_bits=BITS, max_summands=2)
    values = np.array([-2.5, 0.0, 1e-7, 3.25])
    assert np.allclose(
        decode_fixed_point(
            encode_fixed_point(values, fraction_bits=BITS, max_summands=2), fraction_bits=BITS
        ),
        values,
        atol=2**-24,
    )


def test_threshold_is_a_strict_majority():
    assert threshold_for(5, 1) == 4
    assert threshold_for(5, 4) == 3
    assert threshold_for(2, 1) == 2
