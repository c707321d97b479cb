"""Membership-inference audit: attack scores behave as they should on known cases."""

import numpy as np
import pytest

from fedflow.privacy.audit import membership_audit, tpr_at_fpr


def test_tpr_at_fpr_by_hand() -> None:
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.3, 0.2, 0.7, 0.1, 0.05, 0.0])
    # No false positive allowed: threshold 0.8 catches two of four members.
    assert tpr_at_fpr(labels, scores, fpr_target=0.0) == pytest.approx(0.5)
    # One false positive (0.7) allowed: threshold 0.2 catches all four.
    assert tpr_at_fpr(labels, scores, fpr_target=0.25) == pytest.approx(1.0)


def test_a_memorising_model_is_caught_and_a_private_one_is_not() -> None:
    rng = np.random.default_rng(0)
    reference = rng.exponential(1.0, size=2000)
    members_ref, nonmembers_ref = reference[:1000], reference[1000:]
    # Memorised: members' losses dropped to near zero; non-members unchanged.
    leaky = membership_audit(
        member_losses=members_ref * 0.05,
        nonmember_losses=nonmembers_ref,
        member_reference_losses=members_ref,
        nonmember_reference_losses=nonmembers_ref,
    )
    assert leaky["mia_loss_auc"] > 0.9 and leaky["mia_calibrated_auc"] > 0.9
    assert leaky["mia_calibrated_tpr_at_1fpr"] > 0.5
    # Same loss distribution for members and non-members: the attacker is guessing.
    fresh = rng.exponential(1.0, size=2000)
    blind = membership_audit(
        member_losses=fresh[:1000],
        nonmember_losses=fresh[1000:],
        member_reference_losses=members_ref,
        nonmember_reference_losses=nonmembers_ref,
    )
    assert abs(blind["mia_loss_auc"] - 0.5) < 0.05
    assert blind["mia_loss_tpr_at_1fpr"] < 0.05
