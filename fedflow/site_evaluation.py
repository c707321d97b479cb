"""A site scores a global model on its own hold-out rows; only the metrics leave."""

from dataclasses import dataclass

import numpy as np

from fedflow.config import LocalTrainConfig
from fedflow.local import Training, evaluate_local, train_local
from fedflow.site import SiteModels


@dataclass(frozen=True)
class Personalisation:
    """Fine-tune the global model on the site's training rows for a few steps before scoring again."""

    features: np.ndarray
    labels: np.ndarray
    config: LocalTrainConfig
    steps: int
    seed: int


def local_evaluate_step(
    models: SiteModels,
    global_payload: bytes,
    holdout: tuple[np.ndarray, np.ndarray],
    personalisation: Personalisation | None = None,
) -> dict[str, float]:
    """The global model's metrics on the hold-out rows (`holdout`: features and labels).

    With `personalisation` the site also fine-tunes a copy for that many steps and adds
    `personalised/<metric>` values.
    """
    features, labels = holdout
    task = models.task
    model = models.load(global_payload, input_dim=features.shape[1])
    metrics = evaluate_local(model, features, labels, task=task)
    if personalisation is not None:
        tune = personalisation
        config = tune.config.model_copy(update={"max_steps": tune.steps})
        train_local(model, tune.features, tune.labels, Training(task=task, config=config, seed=tune.seed))
        tuned = evaluate_local(model, features, labels, task=task)
        metrics.update({f"personalised/{k}": v for k, v in tuned.items() if k != "num_examples"})
    return metrics
