"""Phase 2: the shared preprocessing, the round-0 model, the strategy; or, resuming, the saved state.

A resumed federation continues with what it agreed on at the start (its preprocessing, class
weights and sites, from its checkpoint), restored here and only here: nothing is refitted.
"""

import logging
from pathlib import Path
from typing import Any

from fedflow.checkpoint import CheckpointError
from fedflow.compatibility import compatibility_problems
from fedflow.compression import build_codec
from fedflow.errors import FedflowError, PayloadError
from fedflow.federation.plan import FederationPlan
from fedflow.federation.preparation import Preparation
from fedflow.federation.recorder import Note, PreprocessingRecord, Recorder
from fedflow.federation.running import RunningFederation
from fedflow.local import balanced_class_weights
from fedflow.params import NamedArrays, check_compatible, decode, encode
from fedflow.privacy.accountant import PrivacyAccountant
from fedflow.privacy.noise_source import new_noise_key
from fedflow.rounds import initial_weights
from fedflow.seeding import derive_seed
from fedflow.signing import keys_root, load_public_key
from fedflow.strategies import build_strategy
from fedflow.tabular import Preprocessor, SiteStatistics, fit_preprocessor, merge_statistics
from fedflow.tasks import HIGHER_IS_BETTER, TaskKind, get_task

Log = logging.Logger | logging.LoggerAdapter  # type: ignore[type-arg]


def _sites_table(
    statistics: dict[str, SiteStatistics], task: TaskKind, plan: FederationPlan
) -> list[dict[str, Any]]:
    """Each site's training row count and label mix, from the aggregates the sites shared."""
    classes = task.class_names(plan.domain.spec)
    rows = []
    for site, stats in statistics.items():
        row: dict[str, Any] = {"site": site, "train_rows": stats.rows}
        for index, name in enumerate(classes):
            count = stats.label_counts.get(str(index), 0)
            row[f"share_{name}"] = round(count / stats.rows, 4) if stats.rows else 0.0
        rows.append(row)
    return rows


def _preprocessing(
    plan: FederationPlan, prepared: Preparation, task: TaskKind, recorder: Recorder
) -> tuple[Preprocessor, list[float] | None]:
    """The preprocessing and class weights: from the checkpoint, the starting model, or fitted now."""
    config, spec = plan.config, plan.domain.spec
    if plan.resume is not None:
        return plan.resume.checkpoint.preprocessor, plan.resume.checkpoint.class_weights
    totals = merge_statistics(prepared.statistics.values())
    preprocessor = fit_preprocessor(totals, spec)
    if plan.start_from is not None:
        # The earlier model's weights only fit the features its preprocessing produces: keep both.
        preprocessor = plan.start_from.preprocessor
    class_weights = (
        balanced_class_weights(totals.label_counts, max(task.output_dim(spec), 2))
        if config.local.class_weighting == "balanced" and task.has_classes
        else None
    )
    sites = _sites_table(prepared.statistics, task, plan)
    recorder.preprocessing_agreed(PreprocessingRecord(preprocessor=preprocessor, sites=sites))
    return preprocessor, class_weights


def _frozen_base(plan: FederationPlan, task: TaskKind, weights: NamedArrays, recorder: Recorder) -> None:
    """Tasks on a frozen base model: check earlier models used the same one; say how little travels."""
    base = task.frozen_base(plan.domain.spec)
    if base is None:
        return
    for what, tags in plan.earlier_models.items():
        if tags.get("base_model.sha256") not in (None, base.sha256):
            raise FedflowError(
                f"{what} was fine-tuned on another base model (sha256 {tags['base_model.sha256'][:12]}…, "
                f"this machine has {base.sha256[:12]}…): its adapters do not fit it"
            )
    adapters = sum(int(v.size) for v in weights.values())
    metrics = {
        "model/adapter_parameters": float(adapters),
        "network/exchanged_parameter_share": base.exchanged_share(adapters),
    }
    recorder.note(Note(tags=base.tags, metrics=metrics, step=0))


def _starting_weights(plan: FederationPlan, fresh: NamedArrays) -> NamedArrays:
    """The weights round 1 starts from: seeded, an earlier model's, or the checkpoint's."""
    weights = fresh
    if plan.start_from is not None:
        earlier = decode(plan.start_from.weights_payload)
        try:
            check_compatible(earlier, fresh)
        except PayloadError as error:
            raise FedflowError(
                f"{plan.start_from.label} does not fit the domain's model.py any more ({error}); "
                "start from scratch"
            ) from error
        weights = earlier
    if plan.resume is not None:
        try:
            check_compatible(plan.resume.weights, fresh)
        except PayloadError as error:
            raise CheckpointError(
                f"the checkpoint of {plan.federation_id!r} does not fit the domain's model any more "
                f"({error}); restore the model options it started with, or start a new federation"
            ) from error
        weights = plan.resume.weights
    return weights


def _eligible(plan: FederationPlan, prepared: Preparation, log: Log) -> list[str]:
    """A resumed run goes on with the sites it started with that still pass validation."""
    if plan.resume is None:
        return prepared.eligible
    lost = sorted(set(plan.resume.checkpoint.eligible) - set(prepared.eligible))
    if lost:
        log.warning("sites %s no longer pass validation; the resumed run goes on without them", lost)
    return [site for site in plan.resume.checkpoint.eligible if site in prepared.eligible]


def _noise_key(plan: FederationPlan, log: Log) -> bytes:
    """The coordinator's secret noise key: made when the federation starts, restored on resume."""
    if plan.resume is not None and plan.resume.noise_key:
        return plan.resume.noise_key
    if plan.resume is not None and plan.config.privacy.mode == "central":
        log.warning("the checkpoint holds no noise key (made before secret noise): new rounds use a new one")
    return new_noise_key()


def _noise_note(plan: FederationPlan, recorder: Recorder) -> None:
    """Say in the run's tags where its DP noise comes from: secret keys, or the seed (experiments)."""
    config = plan.config
    if config.privacy.reproducible_noise:
        recorder.note(Note(tags={"fedflow.noise": "reproducible (experiments only)"}))
    elif config.privacy.mode != "off" or config.local.dp_sgd is not None:
        recorder.note(Note(tags={"fedflow.noise": "secret (each party's own key)"}))


def set_up(plan: FederationPlan, prepared: Preparation, recorder: Recorder, log: Log) -> RunningFederation:
    """Everything round 1 (or the first round after a resume) needs."""
    config, spec = plan.config, plan.domain.spec
    task = get_task(spec.task)
    problems = compatibility_problems(config, task)
    if problems:
        raise FedflowError(f"{plan.domain.name}: " + "; ".join(problems))
    preprocessor, class_weights = _preprocessing(plan, prepared, task, recorder)
    fresh = initial_weights(
        plan.domain.build_model,
        input_dim=len(preprocessor.feature_names),
        output_dim=task.output_dim(spec),
        options=spec.model,
        seed=derive_seed(config.seed, "init"),
    )
    _frozen_base(plan, task, fresh, recorder)
    _noise_note(plan, recorder)
    eligible = _eligible(plan, prepared, log)
    keys = Path(config.authentication.keys_dir) if config.authentication.keys_dir else keys_root()
    champion_metric = spec.champion_metric or task.default_champion_metric
    running = RunningFederation(
        plan=plan,
        task=task,
        eligible=eligible,
        excluded=prepared.excluded,
        train_rows={site: stats.rows for site, stats in prepared.statistics.items()},
        preprocessor=preprocessor,
        class_weights=class_weights,
        reference_payload=encode(fresh),
        strategy=build_strategy(config.strategy.name, config.strategy.options),
        codec=build_codec(config.compression.codec, config.compression.options),
        accountant=PrivacyAccountant(
            delta=config.privacy.delta,
            history=plan.resume.checkpoint.privacy_history if plan.resume is not None else None,
        ),
        public_keys={site: load_public_key(keys, site) for site in eligible}
        if config.authentication.required
        else {},
        champion_metric=champion_metric,
        higher_is_better=champion_metric in HIGHER_IS_BETTER,
        weights=_starting_weights(plan, fresh),
        noise_key=_noise_key(plan, log),
        holdout_rows=dict(prepared.holdout_rows),
    )
    running.strategy.setup(running.weights, num_sites=len(eligible))
    if plan.resume is not None:
        running.strategy.load_state(plan.resume.strategy_state)
        running.completed = plan.resume.round
        running.last_accepted = dict(plan.resume.checkpoint.last_accepted)
        running.history = list(plan.resume.checkpoint.history)
    return running
