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


def test_shadow_memberships_put_every_row_in_half_the_shadows() -> None:
    from fedflow.privacy.lira import shadow_memberships

    memberships = shadow_memberships(rows=50, shadows=8, seed=0)
    assert memberships.shape == (8, 50) and (memberships.sum(axis=0) == 4).all()
    assert not np.array_equal(memberships[0], memberships[1])
    with pytest.raises(ValueError, match="even"):
        shadow_memberships(rows=5, shadows=3, seed=0)


def test_lira_sees_through_row_difficulty_where_the_loss_threshold_cannot() -> None:
    from fedflow.privacy.audit import attack_metrics
    from fedflow.privacy.lira import lira_scores, shadow_memberships

    rng = np.random.default_rng(1)
    rows, shadows = 400, 16
    difficulty = rng.normal(0.0, 3.0, size=rows)  # some rows are simply easy, members or not
    memberships = shadow_memberships(rows, shadows, seed=2)
    stats = difficulty + np.where(memberships, 1.0, 0.0) + rng.normal(0, 0.2, size=(shadows, rows))
    is_member = np.arange(rows) < rows // 2
    target = difficulty + np.where(is_member, 1.0, 0.0) + rng.normal(0, 0.2, size=rows)
    lira = attack_metrics("lira", is_member, lira_scores(target, stats, memberships))
    threshold = attack_metrics("loss", is_member, target)  # higher confidence = member
    assert lira["mia_lira_auc"] > 0.95 and threshold["mia_loss_auc"] < 0.7
    assert lira["mia_lira_tpr_at_1fpr"] > 0.5
    # A model that does not depend on membership gives the attacker nothing.
    blind = difficulty + rng.normal(0, 0.2, size=rows)
    assert (
        abs(attack_metrics("lira", is_member, lira_scores(blind, stats, memberships))["mia_lira_auc"] - 0.5)
        < 0.1
    )


@pytest.mark.slow  # nine models trained for up to 200 epochs on a real hospital's rows
def test_lira_at_a_real_site_catches_a_memorising_model(healthcare) -> None:  # type: ignore[no-untyped-def]
    from fedflow.config import LocalTrainConfig
    from fedflow.local import Training, train_local
    from fedflow.params import encode, get_weights
    from fedflow.privacy.site_audit import AuditInputs, local_audit_step
    from fedflow.rounds import initial_weights
    from fedflow.site import LocalSite, SiteModels
    from fedflow.tabular import fit_preprocessor
    from fedflow.tasks import get_task

    spec = healthcare.spec
    local = LocalSite.load(
        name="cleveland", spec=spec, path=healthcare.site_path("cleveland"), holdout_fraction=0.5, seed=0
    )
    preprocessor = fit_preprocessor(local.statistics(), spec)
    train, holdout = local.arrays(preprocessor, "train"), local.arrays(preprocessor, "holdout")
    dims = {"input_dim": train[0].shape[1], "output_dim": 1, "options": spec.model}
    reference = encode(initial_weights(healthcare.build_model, seed=0, **dims))
    scores = {}
    models = SiteModels(spec=spec, factory=healthcare.build_model)
    for epochs in (2, 200):
        model = models.load(reference, input_dim=train[0].shape[1])
        config = LocalTrainConfig(epochs=epochs, learning_rate=0.1)
        train_local(model, *train, Training(task=get_task("binary"), config=config, seed=1))
        inputs = AuditInputs(
            final_payload=encode(get_weights(model)),
            reference_payload=reference,
            train=train,
            holdout=holdout,
            shadow_models=8,
            shadow_config=config,
            seed=0,
        )
        scores[epochs] = local_audit_step(models, inputs)
    assert scores[200]["mia_lira_auc"] > 0.65 > scores[2]["mia_lira_auc"]
    assert scores[200]["mia_lira_auc"] > scores[200]["mia_loss_auc"]
