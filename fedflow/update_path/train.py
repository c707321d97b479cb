"""The first step of every update path: train the global model on the site's rows."""

import dataclasses
from collections.abc import Sequence

import numpy as np

from fedflow.config import LocalTrainConfig
from fedflow.local import Training, TrainResult, train_local
from fedflow.params import NamedArrays, get_weights, subtract
from fedflow.privacy.dp_sgd import DPSGDSeeds, site_epsilon, train_local_dp_sgd
from fedflow.privacy.noise_source import NoiseKey
from fedflow.seeding import derive_seed
from fedflow.site_state import DP_SGD_STEPS
from fedflow.strategies.base import ClientHook, LocalRound
from fedflow.tasks import TaskKind
from fedflow.update_path.base import SiteWork


class Train:
    """Local training (plain, with the strategy's client hook, or DP-SGD); the delta it made.

    `noise` is the site's secret key bound to the request, which seeds DP-SGD's noise and
    sampling (`None`: seeded from the federation's seed, reproducible noise for experiments).
    """

    name = "train"
    provides = frozenset({"delta"})
    needs: frozenset[str] = frozenset()
    cannot_follow = frozenset({"delta"})

    def __init__(
        self,
        *,
        task: TaskKind,
        config: LocalTrainConfig,
        hook: ClientHook,
        noise: NoiseKey | None,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        self.task = task
        self.config = config
        self.hook = hook
        self.noise = noise
        self.class_weights = class_weights

    def apply(self, work: SiteWork) -> SiteWork:
        """Train, then let the strategy's hook add what it sends and keeps."""
        local = LocalRound(
            start=work.start,
            broadcast=work.broadcast,
            state=work.state,
            learning_rate=self.config.learning_rate,
            momentum=self.config.momentum,
        )
        seed = derive_seed(work.seed, "train", work.round, work.site)
        if self.config.dp_sgd is not None:
            result, state, metrics = self._dp_sgd(work, seed)
        else:
            adjustment = self.hook.gradient_adjustment(local)
            training = Training(
                task=self.task,
                config=self.config,
                seed=seed,
                class_weights=self.class_weights,
                adjustments=[adjustment] if adjustment is not None else [],
            )
            result = train_local(work.model, work.features, work.labels, training)
            state, metrics = {}, {}
        end = get_weights(work.model)
        outcome = self.hook.after_training(local, end, result.steps)
        return dataclasses.replace(
            work,
            delta=subtract(end, work.start),
            extras={**work.extras, **outcome.extras},
            new_state={**work.new_state, **state, **outcome.state},
            num_examples=result.num_examples,
            metrics={"train_loss": result.loss, **metrics},
        )

    def _dp_sgd(self, work: SiteWork, seed: int) -> tuple[TrainResult, NamedArrays, dict[str, float]]:
        dp = self.config.dp_sgd
        assert dp is not None
        training = Training(task=self.task, config=self.config, seed=seed, class_weights=self.class_weights)
        secret = (
            None
            if self.noise is None
            else DPSGDSeeds(
                noise=self.noise.torch_seed("dp-sgd-noise", work.round, work.site),
                sampling=self.noise.torch_seed("dp-sgd-sampling", work.round, work.site),
            )
        )
        result, sample_rate = train_local_dp_sgd(work.model, work.features, work.labels, training, secret)
        # Steps taken in earlier rounds of this federation live in the site's private state.
        total = int(np.asarray(work.state.get(DP_SGD_STEPS, np.zeros(1)))[0]) + result.steps
        epsilon = site_epsilon(dp=dp, sample_rate=sample_rate, total_steps=total)
        return result, {DP_SGD_STEPS: np.array([total], dtype=np.int64)}, {"dp_sgd_epsilon": epsilon}
