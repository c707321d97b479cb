"""The coordinator: a Prefect flow that runs a whole federation, round by round."""

import dataclasses
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from domains import load_domain
from fedflow.checkpoint import (
    STATE_FILE,
    CheckpointError,
    RoundCheckpoint,
    checkpoint_dir,
    load_checkpoint,
    save_checkpoint,
)
from fedflow.compression import build_codec
from fedflow.config import FederationConfig
from fedflow.errors import FedflowError, InsufficientSitesError, PayloadError
from fedflow.language.base_model import (
    base_model_identity,
    exchanged_share,
    locate_base_model,
    weights_digest,
)
from fedflow.language.options import language_config_problems, language_options
from fedflow.local import balanced_class_weights
from fedflow.params import NamedArrays, check_compatible, decode, encode, set_weights
from fedflow.privacy.accountant import PrivacyAccountant
from fedflow.privacy.dp_fedavg import add_gaussian_noise, clip_delta, per_update_noise_std
from fedflow.rounds import check_masked_update, check_update, initial_weights, round_metrics
from fedflow.sampling import sample_sites
from fedflow.seeding import derive_seed
from fedflow.signing import keys_root, load_public_key, verify_update
from fedflow.sitedata import missing_codes
from fedflow.strategies import build_strategy
from fedflow.strategies.base import join_payload, split_payload
from fedflow.tabular import fit_preprocessor, merge_statistics
from fedflow.tasks import HIGHER_IS_BETTER, get_task
from fedflow.update import DecodedUpdate, SiteUpdate
from flows.background import InOrder
from flows.plots import metrics_figure
from flows.progress import RoundEvent, publish
from flows.reports import LISTED_SITES, round_markdown, validation_markdown
from flows.secure_round import AGGREGATE_SITE, close_secure_round, open_secure_round
from flows.site_tasks import SitePreparation, audit_site, evaluate_site, prepare_site, train_site
from flows.tracking import FederationTracker, load_champion, registered_model_name, tracking_uri
from flows.transport import SiteTransport, TransportConfig
from validation import failure_summary


def _sites_table(shared: dict[str, Any], spec: Any) -> pd.DataFrame:
    """Each site's training row count and label mix, from the aggregates the sites shared."""
    classes = (
        ["negative", "positive"]
        if spec.task == "binary"
        else list(spec.target.classes)
        if spec.task == "multiclass"
        else []
    )
    rows = []
    for site, stats in shared.items():
        row: dict[str, Any] = {"site": site, "train_rows": stats.rows}
        for index, name in enumerate(classes):
            count = stats.label_counts.get(str(index), 0)
            row[f"share_{name}"] = round(count / stats.rows, 4) if stats.rows else 0.0
        rows.append(row)
    return pd.DataFrame(rows)


class FederationResult(BaseModel):
    """What a finished federation returns (and the CLI prints)."""

    federation_id: str
    domain: str
    rounds_completed: int
    mlflow_run_id: str
    mlflow_experiment_id: str
    tracking_uri: str
    registered_model: str
    champion_version: str | None = None
    champion_metric: str = ""
    epsilon: float | None = Field(default=None, description="Privacy spent, when differential privacy is on.")
    audit: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Membership-inference attack scores per site."
    )
    final_metrics: dict[str, float] = Field(default_factory=dict)
    per_site: dict[str, dict[str, float]] = Field(default_factory=dict)
    excluded_sites: dict[str, list[str]] = Field(default_factory=dict)


@flow(name="federated-training", log_prints=True)
def federated_training(
    domain: str = "healthcare",
    federation: FederationConfig | None = None,
    sites_file: str | None = None,
    run_name: str | None = None,
    sites: list[str] | None = None,
    transport: TransportConfig | None = None,
    start_from: Literal["scratch", "champion"] = "scratch",
    rounds: int | None = None,
) -> FederationResult:
    """Validate every site, agree on preprocessing from aggregates, then run the rounds.

    `federation` defaults to the domain's config.yaml; `sites_file` is a YAML mapping of site to
    data file that replaces the config's mapping (read by the sites, never logged). `run_name`
    is the federation id: if a checkpoint of an unfinished federation with that id exists, the
    run continues from its last completed round in the same MLflow run, with its original config.
    `sites` limits the run to some of the domain's sites; `transport` says how sites are reached
    (simulation, or cross-silo deployments); `start_from="champion"` continues from the domain's
    champion version (its weights and preprocessing) instead of a seeded model; `rounds`
    overrides the config's number of rounds.
    """
    logger = get_run_logger()
    loaded = load_domain(domain)
    site_names = list(sites) if sites else loaded.spec.site_names
    unknown = sorted(set(site_names) - set(loaded.spec.site_names))
    if unknown:
        raise FedflowError(f"sites {unknown} are not sites of {domain}: {loaded.spec.site_names}")
    site_transport = SiteTransport(transport)
    config = federation if federation is not None else loaded.spec.federation
    if rounds is not None:
        if rounds < 1:
            raise FedflowError(f"rounds must be at least 1, got {rounds}")
        config = config.model_copy(update={"rounds": rounds})
    federation_id = run_name or f"{domain}-{datetime.now(UTC):%Y%m%d-%H%M%S}-seed{config.seed}"
    resumed: Resumed | None = None
    if (checkpoint_dir(federation_id) / STATE_FILE).is_file():
        checkpoint, weights, strategy_state = load_checkpoint(federation_id)
        if checkpoint.domain != domain:
            raise CheckpointError(
                f"federation {federation_id!r} belongs to domain {checkpoint.domain!r}, not {domain!r}"
            )
        if checkpoint.complete:
            raise CheckpointError(
                f"federation {federation_id!r} already completed its {checkpoint.round} rounds "
                f"(MLflow run {checkpoint.mlflow_run_id}); choose another run name"
            )
        saved = FederationConfig.model_validate(checkpoint.config)
        if federation is not None and federation != saved:
            logger.warning(
                "federation %s is resumed with the config it started with; the options given now are ignored",
                federation_id,
            )
        config = saved
        sites_file = sites_file or checkpoint.sites_file
        resumed = Resumed(checkpoint=checkpoint, weights=weights, strategy_state=strategy_state)
        logger.warning("resuming federation %s after round %d", federation_id, checkpoint.round)
        tracker = FederationTracker.resume(domain=domain, run_id=checkpoint.mlflow_run_id)
        tracker.champion = checkpoint.champion
    else:
        tracker = FederationTracker.start(
            domain=domain,
            run_name=federation_id,
            params={"domain": domain, **config.flat()},
            tags={"fedflow.federation_id": federation_id, "fedflow.domain": domain},
        )
    background = InOrder()
    try:
        result = _run(
            loaded,
            config,
            federation_id,
            sites_file,
            tracker,
            logger,
            resumed,
            site_names,
            site_transport,
            start_from if resumed is None else "scratch",  # a resumed run already has its weights
            background,
        )
        background.close()
        return result
    except BaseException as error:
        try:
            background.close()  # what was queued before the failure is still recorded
        except Exception as queued:
            logger.error("tracking of an earlier round failed too: %s", type(queued).__name__)
        # Our own errors say what went wrong without data; others may quote values, so only their type.
        reason = str(error) if isinstance(error, FedflowError) else "see the Prefect log of this run"
        tracker.finish(failure=f"{type(error).__name__}: {reason}")
        raise


def _privatise(
    update: DecodedUpdate, config: FederationConfig, round_number: int, sites: int, *, summed: int = 1
) -> DecodedUpdate:
    """DP-FedAvg at the coordinator: enforce the clip, add the central noise, weigh sites equally.

    With secure aggregation the update is already the mean of `summed` clipped deltas: the
    sites clipped, and the noise of the sum, N(0, (sigma*C)^2), is added divided by `summed`.
    """
    privacy = config.privacy
    delta = update.delta
    if privacy.mode == "central":
        if update.site == AGGREGATE_SITE:
            std = privacy.noise_multiplier * privacy.clip_norm / summed
        else:
            delta = clip_delta(delta, privacy.clip_norm)  # a site that did not clip gains nothing
            std = per_update_noise_std(
                clip_norm=privacy.clip_norm, noise_multiplier=privacy.noise_multiplier, sites_in_round=sites
            )
        delta = add_gaussian_noise(
            delta, std=std, seed=derive_seed(config.seed, "dp-central", round_number, update.site)
        )
    # Equal weights: with example weighting a large site's clipped delta would count for more than C/m.
    return dataclasses.replace(update, delta=delta, num_examples=1)


def _membership_audit(
    domain, sites, final_payload, reference_payload, common, logger, config, transport
) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    """Every site attacks the final model with its own rows; a failing site is left out."""
    # Shadow models see the site's rows about as often as the federation did (capped for time).
    steps = config.local.max_steps
    shadow_config = config.local.model_copy(
        update={
            "epochs": min(config.rounds * config.local.epochs, 30),
            "max_steps": None if steps is None else min(config.rounds * steps, 300),
            "dp_sgd": None,
        }
    )
    futures = transport.map(
        audit_site,
        domain,
        list(sites),
        final_payload=final_payload,
        reference_payload=reference_payload,
        shadow_models=config.audit_shadow_models,
        shadow_config=shadow_config,
        **common,
    )
    out: dict[str, dict[str, float]] = {}
    for site, future in futures.items():
        try:
            out[site] = future.result()
        except Exception as error:
            logger.warning("privacy audit at site %s failed (%s)", site, type(error).__name__)
    return out


@dataclass(frozen=True)
class Resumed:
    """What a resumed federation starts from."""

    checkpoint: RoundCheckpoint
    weights: NamedArrays
    strategy_state: NamedArrays


def _publish_round(
    *,
    tracker: FederationTracker,
    logger: Any,
    loaded: Any,
    checkpoint: RoundCheckpoint,
    weights_payload: bytes,
    global_weights: NamedArrays,
    strategy_state: NamedArrays,
    strategy_name: str,
    metrics: Any,
    logged: dict[str, float],
    champion_metric: str,
    higher_is_better: bool,
    output_dim: int,
    participants: list[str],
    dropped: dict[str, str],
) -> None:
    """A round's tracking, in order: version, champion alias, metrics, artifact, then checkpoint."""
    spec = loaded.spec
    round_number = checkpoint.round
    adapter, version_tags = None, None
    if spec.task == "language":
        # The adapters in peft's own format go with the version, tagged with the base model they fit.
        adapter = loaded.build_model(**spec.model)
        set_weights(adapter, global_weights)
        version_tags = base_model_identity(locate_base_model(language_options(spec.model)))
    version = tracker.register_round(
        round_number=round_number,
        strategy=strategy_name,
        weights_payload=weights_payload,
        preprocessor=checkpoint.preprocessor,
        model_code=loaded.root / "model.py",
        model_options=spec.model,
        missing_codes=missing_codes(spec),
        task=spec.task,
        classes=list(spec.target.classes),
        output_dim=output_dim,
        adapter=adapter,
        version_tags=version_tags,
    )
    tracker.offer_champion(
        version,
        metrics.mean.get(champion_metric, math.nan),
        metric=champion_metric,
        higher_is_better=higher_is_better,
    )
    tracker.log_metrics(logged, step=round_number)
    create_markdown_artifact(
        markdown=round_markdown(
            domain=loaded.name,
            round_number=round_number,
            rounds=checkpoint.config["rounds"],
            metrics=metrics,
            participants=participants,
            dropped=dropped,
            version=version,
        ),
        description=f"{checkpoint.federation_id}: round {round_number}",
    )
    save_checkpoint(
        checkpoint.model_copy(update={"champion": tracker.champion}), global_weights, strategy_state
    )
    logger.info(
        "round %d/%d: %s %.4f (worst %s %.4f), version %s",
        round_number,
        checkpoint.config["rounds"],
        champion_metric,
        metrics.mean.get(champion_metric, math.nan),
        *metrics.worst.get(champion_metric, ("", math.nan)),
        version,
    )


def _same_base_model(
    preparations: list[SitePreparation], model_options: dict[str, Any]
) -> list[SitePreparation]:
    """Exclude language sites that load another base model than the coordinator's: adapters fit one model."""
    expected = weights_digest(locate_base_model(language_options(model_options)))
    out = []
    for preparation in preparations:
        digest = preparation.base_model_sha256
        if preparation.summary.success and digest is not None and digest != expected:
            site = preparation.summary.site
            reason = (
                f"site {site!r} holds another base model (sha256 {digest[:12]}…; the federation's is "
                f"{expected[:12]}…): install the same model files at the site"
            )
            preparation = SitePreparation(summary=failure_summary(site, reason))
        out.append(preparation)
    return out


def _prepared(site: str, future: Any, logger: Any) -> SitePreparation:
    """A site's preparation, or an exclusion when its call failed (cross-silo: not deployed, timed out)."""
    try:
        return future.result()  # type: ignore[no-any-return]
    except FedflowError as error:
        reason = str(error)
    except Exception as error:
        reason = f"the site's validation step failed ({type(error).__name__}); see its own log"
    logger.warning("site %s could not be prepared: %s", site, reason)
    return SitePreparation(summary=failure_summary(site, reason))


def _run(
    loaded,
    config,
    federation_id,
    sites_file,
    tracker,
    logger,
    resumed,
    site_names,
    transport,
    start_from,
    background,
) -> FederationResult:  # type: ignore[no-untyped-def]
    domain = loaded.name
    spec = loaded.spec

    # 1. Every site validates its own data and shares only aggregates.
    futures = transport.map(
        prepare_site,
        domain,
        site_names,
        sites_file=sites_file,
        holdout_fraction=config.holdout_fraction,
        seed=config.seed,
    )
    preparations = [_prepared(site, future, logger) for site, future in futures.items()]
    if spec.task == "language":
        preparations = _same_base_model(preparations, spec.model)
    summaries = [p.summary for p in preparations]
    excluded = {s.site: s.reasons() for s in summaries if not s.success}
    eligible = [p.summary.site for p in preparations if p.summary.success]
    for site, reasons in excluded.items():
        logger.warning("site %s excluded from the run: %s", site, "; ".join(reasons))
    if len(summaries) <= LISTED_SITES:
        for summary in summaries:
            tracker.log_json(summary.model_dump(), f"validation/{summary.site}.json")
    else:  # many simulated clients: one file, not thousands
        tracker.log_json([summary.model_dump() for summary in summaries], "validation/all_sites.json")
    tracker.set_tags({"sites.eligible": ",".join(eligible), "sites.excluded": ",".join(excluded) or "none"})
    tracker.log_metrics({"sites/eligible": len(eligible), "sites/excluded": len(excluded)}, step=0)
    create_markdown_artifact(
        markdown=validation_markdown(domain, summaries),
        key=f"{domain.replace('_', '-')}-validation",
        description=f"Data validation of {federation_id}",
    )
    if len(eligible) < config.min_sites:
        raise InsufficientSitesError(
            f"only {len(eligible)} site(s) passed validation ({', '.join(eligible) or 'none'}) but "
            f"min_sites is {config.min_sites}; excluded: "
            + "; ".join(f"{site}: {' / '.join(reasons)}" for site, reasons in excluded.items())
        )

    # 2. Preprocessing from summed counts and sums; the round-0 model from the seed.
    task = get_task(spec.task)
    if spec.task == "language":
        problems = language_config_problems(config)
        if problems:
            raise FedflowError(f"{domain}: " + "; ".join(problems))
    shared = {p.summary.site: p.statistics for p in preparations if p.statistics is not None}
    totals = merge_statistics(shared.values())
    train_rows = {site: stats.rows for site, stats in shared.items()}
    preprocessor = fit_preprocessor(totals, spec)
    champion = load_champion(domain) if start_from == "champion" else None
    if champion is not None:
        # The champion's weights only fit the features its preprocessing produces: keep both.
        preprocessor = champion.preprocessor
        tracker.set_tags({"fedflow.continued_from": f"{registered_model_name(domain)}/{champion.version}"})
        logger.info("continuing from %s version %s", registered_model_name(domain), champion.version)
    tracker.log_json(preprocessor.model_dump(), "preprocessing/preprocessor.json")
    tracker.log_sites_table(_sites_table(shared, spec))
    output_dim = task.output_dim(spec)
    global_weights = initial_weights(
        loaded.build_model,
        input_dim=len(preprocessor.feature_names),
        output_dim=output_dim,
        options=spec.model,
        seed=derive_seed(config.seed, "init"),
    )
    reference_payload = encode(global_weights)  # the round-0 model: the audit's reference
    if spec.task == "language":
        # The base model stays at every site; say which one, and how little of it travels.
        location = locate_base_model(language_options(spec.model))
        identity = base_model_identity(location)
        earlier = {
            "the champion version": champion.tags if champion is not None else {},
            "the run being resumed": tracker.tags() if resumed is not None else {},
        }
        for what, tags in earlier.items():
            if tags.get("base_model.sha256") not in (None, identity["base_model.sha256"]):
                raise FedflowError(
                    f"{what} was fine-tuned on another base model (sha256 {tags['base_model.sha256'][:12]}…, "
                    f"this machine has {identity['base_model.sha256'][:12]}…): its adapters do not fit it"
                )
        adapters = sum(int(v.size) for v in global_weights.values())
        tracker.set_tags(identity)
        tracker.log_metrics(
            {
                "model/adapter_parameters": float(adapters),
                "comm/exchanged_parameter_share": exchanged_share(location, adapters),
            },
            step=0,
        )
    if champion is not None:
        continued = decode(champion.weights_payload)
        try:
            check_compatible(continued, global_weights)
        except PayloadError as error:
            raise FedflowError(
                f"champion version {champion.version} does not fit the domain's model.py any more ({error}); "
                "start from scratch"
            ) from error
        global_weights = continued
    strategy = build_strategy(config.strategy.name, config.strategy.options)
    codec = build_codec(config.compression.codec, config.compression.options)
    first_round = 1
    history: list[dict[str, float]] = []
    if resumed is not None:
        lost = sorted(set(resumed.checkpoint.eligible) - set(eligible))
        if lost:
            logger.warning("sites %s no longer pass validation; the resumed run goes on without them", lost)
        eligible = [site for site in resumed.checkpoint.eligible if site in eligible]
        try:
            check_compatible(resumed.weights, global_weights)
        except PayloadError as error:
            raise CheckpointError(
                f"the checkpoint of {federation_id!r} does not fit the domain's model any more ({error}); "
                "restore the model options it started with, or start a new federation"
            ) from error
        global_weights = resumed.weights
        first_round = resumed.checkpoint.round + 1
        history = list(resumed.checkpoint.history)
    strategy.setup(global_weights, num_sites=len(eligible))
    if resumed is not None:
        strategy.load_state(resumed.strategy_state)
    champion_metric = spec.champion_metric or task.default_champion_metric
    higher_is_better = champion_metric in HIGHER_IS_BETTER
    class_weights = (
        balanced_class_weights(totals.label_counts, max(output_dim, 2))
        if config.local.class_weighting == "balanced" and task.has_classes
        else None
    )
    last_metrics: dict[str, float] = {}
    last_per_site: dict[str, dict[str, float]] = {}
    common: dict[str, Any] = {
        "preprocessor": preprocessor,
        "holdout_fraction": config.holdout_fraction,
        "seed": config.seed,
        # Where a process that has not prepared a site (a Dask worker) finds its rows; never sent cross-silo.
        "sites_file": sites_file,
    }
    private = config.privacy.mode != "off"
    accountant = PrivacyAccountant(
        delta=config.privacy.delta, history=resumed.checkpoint.privacy_history if resumed else None
    )
    epsilon = accountant.epsilon
    keys = Path(config.authentication.keys_dir) if config.authentication.keys_dir else keys_root()
    public_keys = (
        {site: load_public_key(keys, site) for site in eligible} if config.authentication.required else {}
    )
    if resumed is not None:
        # The run continues with what it agreed on at the start, not with a refit.
        preprocessor = resumed.checkpoint.preprocessor
        class_weights = resumed.checkpoint.class_weights
        common["preprocessor"] = preprocessor

    completed = first_round - 1
    # The last round each site's update was accepted: its private state continues from there.
    last_accepted: dict[str, int] = dict(resumed.checkpoint.last_accepted) if resumed is not None else {}
    for round_number in range(first_round, config.rounds + 1):
        started = time.perf_counter()
        chosen = sample_sites(
            eligible,
            fraction=config.sites_fraction,
            minimum=config.min_sites_per_round,
            seed=derive_seed(config.seed, "sample", round_number),
        )
        sample_rate = len(chosen) / len(eligible)
        if private and config.privacy.target_epsilon is not None:
            next_epsilon = accountant.epsilon_if(
                noise_multiplier=config.privacy.noise_multiplier, sample_rate=sample_rate
            )
            if next_epsilon > config.privacy.target_epsilon:
                logger.warning(
                    "privacy budget: round %d would spend epsilon %.3f > target %.3f; stopping after %d",
                    round_number,
                    next_epsilon,
                    config.privacy.target_epsilon,
                    round_number - 1,
                )
                tracker.set_tags(
                    {"fedflow.stopped": f"privacy budget reached after round {round_number - 1}"}
                )
                break
        global_payload = encode(join_payload(global_weights, split_payload(strategy.broadcast())[1]))
        secure_round = (
            open_secure_round(
                chosen,
                domain=domain,
                transport=transport,
                federation_id=federation_id,
                round_number=round_number,
                settings=config.secure_aggregation,
                # Under DP every site weighs the same: a clipped delta must move the mean by at most C/m.
                weighted_by_examples=not private and getattr(strategy, "weighting", "examples") == "examples",
                min_sites=config.min_sites,
            )
            if config.secure_aggregation.enabled
            else None
        )
        trainers = list(secure_round.plan.members) if secure_round is not None else chosen
        train_futures = transport.map(
            train_site,
            domain,
            trainers,
            per_site={site: {"accepted_round": last_accepted.get(site, 0)} for site in trainers},
            round_number=round_number,
            global_payload=global_payload,
            federation_id=federation_id,
            local_config=config.local,
            strategy=config.strategy,
            class_weights=class_weights,
            attack=config.attack,
            keys_dir=config.authentication.keys_dir,
            privacy=config.privacy,
            sites_in_round=len(chosen),
            secure=secure_round.plan if secure_round is not None else None,
            compression=config.compression,
            **common,
        )
        dropped: dict[str, str] = dict(secure_round.failed) if secure_round is not None else {}
        accepted: list[DecodedUpdate] = []
        masked: dict[str, tuple[np.ndarray, int]] = {}
        reported: dict[str, tuple[dict[str, float], int]] = {}  # each contributor's metrics and examples
        bytes_received = 0
        dense_bytes = accepted_bytes = 0  # accepted deltas uncompressed, and as sent
        for site, future in train_futures.items():
            try:
                update: SiteUpdate = future.result()
                bytes_received += len(update.payload)
                if config.authentication.required:
                    verify_update(
                        public_keys.get(site),
                        update.signature,
                        federation_id=federation_id,
                        round_number=round_number,
                        site=site,
                        payload=update.payload,
                    )
                if secure_round is not None:
                    masked[site] = (
                        check_masked_update(
                            update,
                            global_weights,
                            max_payload_bytes=config.checks.max_payload_bytes,
                            max_examples=train_rows.get(site),
                        ),
                        update.num_examples,
                    )
                else:
                    accepted.append(
                        check_update(
                            update,
                            global_weights,
                            extras=strategy.site_extras,
                            max_payload_bytes=config.checks.max_payload_bytes,
                            max_update_norm=config.checks.max_update_norm,
                            max_examples=train_rows.get(site),
                            codec=codec,
                        )
                    )
                    # Re-encode only when a codec changed the payload: uncompressed, it is its own size.
                    compressed = codec.name != "none"
                    dense_bytes += len(encode(accepted[-1].delta)) if compressed else len(update.payload)
                    accepted_bytes += len(update.payload)
                reported[site] = (dict(update.metrics), update.num_examples)
                last_accepted[site] = round_number
            except FedflowError as error:
                dropped[site] = str(error)  # our own messages: counts and names, no data
            except Exception as error:  # a crashed site must not end the round for the others
                # The text may quote the site's data; it stays in the site's task log.
                dropped[site] = f"the site's step failed ({type(error).__name__}); see its own log"
        for site, reason in dropped.items():
            logger.warning("round %d: update of site %s dropped: %s", round_number, site, reason)
        if len(reported) < config.min_sites:
            raise InsufficientSitesError(
                f"round {round_number}: only {len(reported)} valid update(s) but min_sites is "
                f"{config.min_sites}; dropped: {dropped}"
            )
        if secure_round is not None:
            # The coordinator learns only the survivors' sum; it becomes one mean update.
            accepted = [
                close_secure_round(
                    secure_round,
                    masked,
                    domain=domain,
                    transport=transport,
                    federation_id=federation_id,
                    round_number=round_number,
                    global_weights=global_weights,
                    logger=logger,
                )
            ]
        if private:
            accepted = [
                _privatise(u, config, round_number, len(chosen), summed=len(reported)) for u in accepted
            ]
            epsilon = accountant.record(
                noise_multiplier=config.privacy.noise_multiplier, sample_rate=sample_rate
            )
        global_weights = strategy.aggregate(round_number, global_weights, accepted)

        # 3. Federated evaluation: every eligible site scores the new global model on its hold-out.
        new_payload = encode(global_weights)
        # Without hold-outs there is nothing to score at the sites.
        eval_futures = transport.map(
            evaluate_site,
            domain,
            eligible if config.holdout_fraction > 0 else [],
            round_number=round_number,
            global_payload=new_payload,
            local_config=config.local,
            personalization_steps=config.personalization_steps,
            **common,
        )
        per_site: dict[str, dict[str, float]] = {}
        for site, future in eval_futures.items():
            try:
                per_site[site] = future.result()
            except Exception as error:
                logger.warning(
                    "round %d: evaluation at site %s failed (%s)", round_number, site, type(error).__name__
                )
        names = [
            *task.metric_names,
            *(f"personalised/{m}" for m in task.metric_names if config.personalization_steps),
        ]
        metrics = round_metrics(per_site, names)
        metrics = dataclasses.replace(metrics, mean=task.global_metrics(metrics.mean))
        train_loss = sum(m.get("train_loss", math.nan) * n for m, n in reported.values()) / sum(
            n for _, n in reported.values()
        )
        bytes_sent = len(global_payload) * len(chosen) + len(new_payload) * len(eval_futures)
        logged = {
            **(metrics.flat() if len(per_site) <= LISTED_SITES else metrics.flat_summary()),
            "train/loss": train_loss,
            "comm/bytes_sent": float(bytes_sent),
            "comm/bytes_received": float(bytes_received),
            "comm/uplink_compression": dense_bytes / accepted_bytes if accepted_bytes else 1.0,
            "sites/participants": float(len(reported)),
            "sites/dropped": float(len(dropped)),
        }
        if private:
            logged["privacy/epsilon"] = epsilon
        if secure_round is not None:
            logged["secure_aggregation/threshold"] = float(secure_round.plan.threshold)
            logged["secure_aggregation/members"] = float(len(secure_round.plan.members))
        site_epsilons = {
            site: m["dp_sgd_epsilon"] for site, (m, _) in reported.items() if "dp_sgd_epsilon" in m
        }
        if site_epsilons:
            logged.update({f"site/{s}/dp_sgd_epsilon": e for s, e in site_epsilons.items()})
            logged["privacy/dp_sgd_epsilon_max"] = max(site_epsilons.values())

        logged["time/round_seconds"] = time.perf_counter() - started  # the round's critical path
        history.append(logged)
        completed = round_number
        # Tracking trails the rounds on one background thread (in order): the sites go on training.
        checkpoint = RoundCheckpoint(
            federation_id=federation_id,
            domain=domain,
            round=round_number,
            mlflow_run_id=tracker.run_id,
            config=config.model_dump(),
            sites_file=sites_file,
            eligible=eligible,
            excluded=excluded,
            preprocessor=preprocessor,
            class_weights=class_weights,
            champion=None,
            privacy_history=list(accountant.history),
            last_accepted=dict(last_accepted),
            history=list(history),
        )
        background.submit(
            _publish_round,
            tracker=tracker,
            logger=logger,
            loaded=loaded,
            checkpoint=checkpoint,
            weights_payload=new_payload,
            global_weights=global_weights,
            strategy_state={k: np.array(v, copy=True) for k, v in strategy.state().items()},
            strategy_name=strategy.name,
            metrics=metrics,
            logged=dict(logged),
            champion_metric=champion_metric,
            higher_is_better=higher_is_better,
            output_dim=output_dim,
            participants=list(reported),
            dropped=dict(dropped),
        )
        last_metrics = {k: v for k, v in metrics.mean.items()}
        last_per_site = metrics.per_site
        publish(
            RoundEvent(
                champion_metric=champion_metric,
                epsilon=epsilon if private else None,
                round=round_number,
                rounds=config.rounds,
                metrics=last_metrics,
                participants=list(reported),
                dropped=dropped,
            )
        )

    background.drain()  # every round's version, metrics and checkpoint are recorded before the end
    audit: dict[str, dict[str, float]] = {}
    if config.audit and completed > 0 and config.holdout_fraction > 0:
        audit = _membership_audit(
            domain, eligible, encode(global_weights), reference_payload, common, logger, config, transport
        )
        flat = {f"audit/{site}/{k}": v for site, values in audit.items() for k, v in values.items()}
        for key in (
            "mia_loss_auc",
            "mia_calibrated_auc",
            "mia_loss_tpr_at_1fpr",
            "mia_calibrated_tpr_at_1fpr",
            "mia_lira_auc",
            "mia_lira_tpr_at_1fpr",
        ):
            values = [v[key] for v in audit.values()]
            if values:
                flat[f"audit/max/{key}"] = max(values)
        tracker.log_metrics(flat, step=completed)
        tracker.log_json(audit, "audit/membership_inference.json")
    plotted = [champion_metric, "loss"] if champion_metric != "loss" else ["loss"]
    tracker.log_figure(metrics_figure(history, plotted, eligible), "plots/metrics_by_round.png")
    tracker.finish()
    return FederationResult(
        federation_id=federation_id,
        domain=domain,
        rounds_completed=completed,
        epsilon=epsilon if private else None,
        audit=audit,
        mlflow_run_id=tracker.run_id,
        mlflow_experiment_id=tracker.experiment_id,
        tracking_uri=tracking_uri(),
        registered_model=registered_model_name(domain),
        champion_version=tracker.champion[0] if tracker.champion else None,
        champion_metric=champion_metric,
        final_metrics=last_metrics,
        per_site=last_per_site,
        excluded_sites=excluded,
    )
