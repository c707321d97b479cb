"""Membership-inference audit of a trained model at one site (its rows never leave).

The attacker guesses whether a row was in the site's training rows (members) or its hold-out
(non-members) from the model's loss on it:
- loss threshold (Yeom et al., "Privacy Risk in Machine Learning", CSF 2018): low loss means
  member;
- calibrated loss (Watson et al., "On the Importance of Difficulty Calibration in Membership
  Inference Attacks", ICLR 2022): the loss drop from a reference model that never trained on
  either set — here the round-0 model — so rows that are simply easy do not look like members.
Reported per attack: ROC AUC (0.5 = the attacker learns nothing) and the true-positive rate at
a 1 % false-positive rate. Only these numbers leave the site.
"""

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr_target: float = 0.01) -> float:
    """The best true-positive rate whose false-positive rate is at most `fpr_target`."""
    fpr, tpr, _ = roc_curve(labels, scores)
    allowed = tpr[fpr <= fpr_target]
    return float(allowed.max()) if allowed.size else 0.0


def attack_metrics(name: str, labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """`mia_<name>_auc` and `mia_<name>_tpr_at_1fpr` of one attack's scores (higher = member)."""
    return {
        f"mia_{name}_auc": float(roc_auc_score(labels, scores)),
        f"mia_{name}_tpr_at_1fpr": tpr_at_fpr(labels, scores),
    }


def membership_audit(
    *,
    member_losses: np.ndarray,
    nonmember_losses: np.ndarray,
    member_reference_losses: np.ndarray,
    nonmember_reference_losses: np.ndarray,
) -> dict[str, float]:
    """AUC and TPR at 1 % FPR of the loss-threshold and the calibrated-loss attacks."""
    labels = np.concatenate([np.ones(len(member_losses)), np.zeros(len(nonmember_losses))])
    loss = np.concatenate([member_losses, nonmember_losses])
    reference = np.concatenate([member_reference_losses, nonmember_reference_losses])
    return {**attack_metrics("loss", labels, -loss), **attack_metrics("calibrated", labels, reference - loss)}
