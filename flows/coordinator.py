"""The coordinator flow: wiring around the engine's federation driver.

The flow resolves what the run is (domain, config, sites, a resumed checkpoint or a champion to
continue from), builds a site channel (Prefect tasks in simulation, site deployments
cross-silo) and a recorder (MLflow, Prefect artifacts, checkpoints), and runs
`fedflow.federation.run_federation`. The round protocol itself lives in the engine.
"""

from datetime import UTC, datetime
from typing import Any, Literal

from prefect import flow, get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from domains import Domain, load_domain
from fedflow.checkpoint import STATE_FILE, CheckpointError, checkpoint_dir
from fedflow.config import FederationConfig
from fedflow.errors import FedflowError
from fedflow.federation import (
    DomainModel,
    FederationOutcome,
    FederationPlan,
    FederationState,
    SiteChannel,
    StartingPoint,
    run_federation,
)
from fedflow.run_names import federation_name, run_tags
from fedflow.site_policy import model_sha256
from flows.run_links import RunLinks, link_runs, name_flow_run
from flows.site_agents import SiteLocation
from flows.site_channels import DeploymentChannel, SimulationChannel
from flows.tracking import FederationTracker, load_champion, registered_model_name, tracking_uri
from flows.tracking_recorder import Log, TrackingRecorder
from flows.transport import TransportConfig
from flows.ui_links import mlflow_run_url, mlflow_ui_base


class SiteSelection(BaseModel):
    """Which of the domain's sites take part, and (simulation) where their files are."""

    model_config = ConfigDict(extra="forbid")

    names: list[str] | None = Field(default=None, description="Some of the domain's sites (default: all).")
    files: str | None = Field(
        default=None,
        description="A YAML mapping of site to data file replacing the config's (read by the sites, "
        "never logged).",
    )


class FederationResult(BaseModel):
    """What a finished federation returns (and the CLI prints)."""

    federation_id: str
    domain: str
    rounds_completed: int
    mlflow_run_id: str
    mlflow_experiment_id: str
    tracking_uri: str
    mlflow_run_url: str = Field(default="", description="The run's page in the MLflow UI (`fedflow ui`).")
    prefect_flow_run_id: str | None = None
    registered_model: str
    champion_version: str | None = None
    champion_metric: str = ""
    champion_origin: str | None = Field(
        default=None, description="Where the champion came from: its version, score, round and run."
    )
    epsilon: float | None = Field(default=None, description="Privacy spent, when differential privacy is on.")
    audit: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Membership-inference attack scores per site."
    )
    final_metrics: dict[str, float] = Field(default_factory=dict)
    per_site: dict[str, dict[str, float]] = Field(default_factory=dict)
    excluded_sites: dict[str, list[str]] = Field(default_factory=dict)


def _site_names(loaded: Domain, sites: SiteSelection) -> list[str]:
    names = list(sites.names) if sites.names else loaded.spec.site_names
    unknown = sorted(set(names) - set(loaded.spec.site_names))
    if unknown:
        raise FedflowError(f"sites {unknown} are not sites of {loaded.name}: {loaded.spec.site_names}")
    return names


def _resumable(
    federation_id: str, domain: str, given: FederationConfig | None, log: Log
) -> FederationState | None:
    """The federation's checkpoint, when an unfinished federation with this id exists."""
    if not (checkpoint_dir(federation_id) / STATE_FILE).is_file():
        return None
    state = FederationState.load(federation_id)
    checkpoint = state.checkpoint
    if checkpoint.domain != domain:
        raise CheckpointError(
            f"federation {federation_id!r} belongs to domain {checkpoint.domain!r}, not {domain!r}"
        )
    if checkpoint.complete:
        raise CheckpointError(
            f"federation {federation_id!r} already completed its {checkpoint.round} rounds "
            f"(MLflow run {checkpoint.mlflow_run_id}); choose another run name"
        )
    if given is not None and given != FederationConfig.model_validate(checkpoint.config):
        log.warning(
            "federation %s is resumed with the config it started with; the options given now are ignored",
            federation_id,
        )
    log.warning("resuming federation %s after round %d", federation_id, checkpoint.round)
    return state


def _config(
    loaded: Domain, federation: FederationConfig | None, overrides: dict[str, Any] | None
) -> FederationConfig:
    config = federation if federation is not None else loaded.spec.federation
    return FederationConfig.with_overrides(config, overrides) if overrides else config


def _champion(loaded: Domain, tracker: FederationTracker, log: Log) -> StartingPoint:
    """The domain's champion version as a starting point (its weights and preprocessing)."""
    champion = load_champion(loaded.name)
    label = f"{registered_model_name(loaded.name)}/{champion.version}"
    tracker.set_tags({"fedflow.continued_from": label})
    log.info("continuing from %s version %s", registered_model_name(loaded.name), champion.version)
    return StartingPoint(
        label=f"champion version {champion.version}",
        weights_payload=champion.weights_payload,
        preprocessor=champion.preprocessor,
        tags=champion.tags,
    )


def _tracker(loaded: Domain, resolved: "Resolved", tags: dict[str, str]) -> FederationTracker:
    """The federation's MLflow run: started with every option resolved, or reopened as it was."""
    resume = resolved.resume
    tags = {"fedflow.federation_id": resolved.federation_id, **tags}
    if resume is not None:  # params are immutable: the run keeps the ones it started with
        tracker = FederationTracker.resume(domain=loaded.name, run_id=resume.checkpoint.mlflow_run_id)
        tracker.champion = resume.checkpoint.champion
        tracker.set_tags(tags)
        return tracker
    return FederationTracker.start(
        domain=loaded.name,
        run_name=resolved.federation_id,
        params={"domain": loaded.name, **resolved.config.flat()},
        tags=tags,
    )


def _refuse_seeded_noise_across_silos(config: FederationConfig, transport: TransportConfig) -> None:
    """Cross-silo, every party draws DP noise from its own secret key: seeded noise is refused."""
    if transport.mode == "cross-silo" and config.privacy.reproducible_noise:
        raise FedflowError(
            "privacy.reproducible_noise is for experiments only: noise drawn from the federation's seed "
            "can be removed by anyone who knows the seed, and the seed travels to every site and is an "
            "MLflow param. A cross-silo federation draws its DP noise from each party's own secret key "
            "(served sites refuse seeded noise too): turn privacy.reproducible_noise off."
        )


def _channel(loaded: Domain, resolved: "Resolved", transport: TransportConfig) -> SiteChannel:
    if transport.mode == "cross-silo":
        return DeploymentChannel(loaded.name, transport)
    location = SiteLocation.here(resolved.sites_file, resolved.config.authentication.keys_dir)
    return SimulationChannel(loaded.name, location, transport)


class Resolved(BaseModel):
    """What the run is, before anything is recorded: its id, config, files, and a checkpoint to resume."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    federation_id: str
    config: FederationConfig
    sites_file: str | None
    resume: FederationState | None


def _resolve(loaded: Domain, request: "FederationRequest", log: Log) -> Resolved:
    config = _config(loaded, request.federation, request.overrides)
    federation_id = federation_name(loaded.name, config, datetime.now(UTC), given=request.run_name)
    resume = _resumable(federation_id, loaded.name, request.federation, log)
    sites_file = request.sites.files
    if resume is not None:
        config = FederationConfig.model_validate(resume.checkpoint.config)
        sites_file = sites_file or resume.checkpoint.sites_file
    return Resolved(federation_id=federation_id, config=config, sites_file=sites_file, resume=resume)


def _plan(
    loaded: Domain, request: "FederationRequest", resolved: Resolved, tracker: FederationTracker, log: Log
) -> FederationPlan:
    """The engine's plan; a champion to continue from is read here (a resumed run already has weights)."""
    resume = resolved.resume
    start = _champion(loaded, tracker, log) if request.start_from == "champion" and resume is None else None
    earlier = {"the champion version": start.tags} if start is not None else {}
    if resume is not None:
        earlier["the run being resumed"] = tracker.tags()
    return FederationPlan(
        federation_id=resolved.federation_id,
        domain=DomainModel(
            name=loaded.name,
            spec=loaded.spec,
            build_model=loaded.build_model,
            model_sha256=model_sha256(loaded.root / "model.py"),
        ),
        config=resolved.config,
        sites=_site_names(loaded, request.sites),
        tracking_run_id=tracker.run_id,
        sites_file=resolved.sites_file,
        start_from=start,
        resume=resume,
        earlier_models=earlier,
    )


class FederationRequest(BaseModel):
    """The flow's parameters, as one object for the wiring below."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    federation: FederationConfig | None
    overrides: dict[str, Any] | None
    sites: SiteSelection
    run_name: str | None
    transport: TransportConfig
    start_from: Literal["scratch", "champion"]


def _result(
    plan: FederationPlan, tracker: FederationTracker, outcome: FederationOutcome, flow_run_id: str | None
) -> FederationResult:
    return FederationResult(
        federation_id=plan.federation_id,
        domain=plan.domain.name,
        rounds_completed=outcome.rounds_completed,
        epsilon=outcome.epsilon,
        audit=outcome.audit,
        mlflow_run_id=tracker.run_id,
        mlflow_experiment_id=tracker.experiment_id,
        tracking_uri=tracking_uri(),
        mlflow_run_url=mlflow_run_url(mlflow_ui_base(), tracker.experiment_id, tracker.run_id),
        prefect_flow_run_id=flow_run_id,
        registered_model=registered_model_name(plan.domain.name),
        champion_version=tracker.champion[0] if tracker.champion else None,
        champion_metric=outcome.champion_metric,
        champion_origin=source.summary() if (source := tracker.champion_source()) else None,
        final_metrics=outcome.final_metrics,
        per_site=outcome.per_site,
        excluded_sites=outcome.excluded,
    )


@flow(name="federated-training", log_prints=True)
def federated_training(
    domain: str = "healthcare",
    federation: FederationConfig | None = None,
    overrides: dict[str, Any] | None = None,
    sites: SiteSelection | None = None,
    run_name: str | None = None,
    transport: TransportConfig | None = None,
    start_from: Literal["scratch", "champion"] = "scratch",
) -> FederationResult:
    """Validate every site, agree on preprocessing from aggregates, then run the rounds.

    `federation` defaults to the domain's config.yaml; `overrides` changes some of it by dotted
    key (`{"rounds": 5, "local.epochs": 2}`, checked like the CLI's `-c`). `sites` limits the
    run to some of the domain's sites and (simulation) says where their files are. `run_name`
    is the federation id, and the name of the MLflow run and of this flow run (default: the
    domain, the strategy, what else differs and the start time, e.g.
    `healthcare-fedprox-dp-secagg-20261202-163501`). If a checkpoint of an unfinished federation
    with that id exists, the run continues from its last completed round in the same MLflow run,
    with its original config. `transport` says how sites are reached (simulation, or cross-silo deployments);
    `start_from="champion"` continues from the domain's champion version (its weights and
    preprocessing) instead of a seeded model.
    """
    log = get_run_logger()
    loaded = load_domain(domain)
    request = FederationRequest(
        federation=federation,
        overrides=overrides,
        sites=sites or SiteSelection(),
        run_name=run_name,
        transport=transport or TransportConfig(),
        start_from=start_from,
    )
    _site_names(loaded, request.sites)  # unknown sites fail before anything is recorded
    resolved = _resolve(loaded, request, log)
    _refuse_seeded_noise_across_silos(resolved.config, request.transport)
    tags = run_tags(loaded.name, resolved.config, request.transport.mode)
    flow_run_id = name_flow_run(resolved.federation_id, tags)  # the same name and tags in Prefect
    tracker = _tracker(loaded, resolved, tags)
    recorder = TrackingRecorder(tracker=tracker, domain=loaded, federation_id=resolved.federation_id, log=log)
    channel = _channel(loaded, resolved, request.transport)
    try:
        link_runs(RunLinks(resolved.federation_id, loaded.name, resolved.config, tracker, flow_run_id))
        plan = _plan(loaded, request, resolved, tracker, log)
        outcome = run_federation(plan, channel=channel, recorder=recorder, log=log)
    except BaseException as error:
        recorder.close(failure=error)
        raise
    finally:
        if isinstance(channel, DeploymentChannel):
            channel.close("the federation's run ended")
    recorder.close()
    return _result(plan, tracker, outcome, flow_run_id)
