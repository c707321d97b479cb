"""The membership-inference audit a site runs on the final model with its own rows; only scores leave.

Loss-threshold and reference-calibrated attacks compare the final model's losses on the site's
training rows (members) with those on its hold-out (non-members). With shadow models the site
also runs LiRA (Carlini et al. 2022): shadow models trained from the round-0 weights, each on a
random half of its rows.
"""

from dataclasses import dataclass

import numpy as np

from fedflow.config import LocalTrainConfig
from fedflow.local import Training, predict, train_local
from fedflow.privacy.audit import attack_metrics, membership_audit
from fedflow.privacy.lira import confidence_from_losses, lira_scores, shadow_memberships
from fedflow.seeding import derive_seed
from fedflow.site import SiteModels

Rows = tuple[np.ndarray, np.ndarray]  # features and labels


@dataclass(frozen=True)
class AuditInputs:
    """What the audit compares: the final and round-0 models, the site's members and non-members."""

    final_payload: bytes
    reference_payload: bytes
    train: Rows
    holdout: Rows
    shadow_models: int = 0
    shadow_config: LocalTrainConfig | None = None
    seed: int = 0


def _losses(models: SiteModels, payload: bytes, inputs: AuditInputs) -> list[np.ndarray]:
    """Per-row losses of a model on the training rows, then on the hold-out."""
    task = models.task
    model = models.load(payload, input_dim=inputs.train[0].shape[1])
    return [task.example_losses(y, predict(model, x, task)) for x, y in (inputs.train, inputs.holdout)]


def _lira(models: SiteModels, inputs: AuditInputs, final_losses: list[np.ndarray]) -> dict[str, float]:
    """LiRA's AUC and TPR at 1 % FPR, from shadow models that did and did not see each row."""
    task = models.task
    features = np.concatenate([inputs.train[0], inputs.holdout[0]])
    labels = np.concatenate([inputs.train[1], inputs.holdout[1]])
    memberships = shadow_memberships(len(labels), inputs.shadow_models, derive_seed(inputs.seed, "lira"))
    config = inputs.shadow_config or LocalTrainConfig()
    stats = []
    for index, chosen in enumerate(memberships):
        shadow = models.load(inputs.reference_payload, input_dim=features.shape[1])
        training = Training(task=task, config=config, seed=derive_seed(inputs.seed, "lira-shadow", index))
        train_local(shadow, features[chosen], labels[chosen], training)
        shadow_losses = task.example_losses(labels, predict(shadow, features, task))
        stats.append(confidence_from_losses(shadow_losses, classification=task.has_classes))
    target = confidence_from_losses(np.concatenate(final_losses), classification=task.has_classes)
    is_member = np.concatenate([np.ones(len(inputs.train[1])), np.zeros(len(inputs.holdout[1]))])
    return attack_metrics("lira", is_member, lira_scores(target, np.stack(stats), memberships))


def local_audit_step(models: SiteModels, inputs: AuditInputs) -> dict[str, float]:
    """Every attack's AUC and TPR at 1 % FPR against this site's rows."""
    final = _losses(models, inputs.final_payload, inputs)
    reference = _losses(models, inputs.reference_payload, inputs)
    out = membership_audit(
        member_losses=final[0],
        nonmember_losses=final[1],
        member_reference_losses=reference[0],
        nonmember_reference_losses=reference[1],
    )
    if inputs.shadow_models:
        out.update(_lira(models, inputs, final))
    return out
