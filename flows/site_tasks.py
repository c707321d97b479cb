"""The site's steps as thin Prefect tasks around `fedflow.site`.

In simulation every site is a task in the coordinator's process, reading only its own file;
the rows stay in a per-site cache that the coordinator never reads.
"""

import dataclasses
import functools
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from domains import Domain, load_domain
from domains.yaml_files import load_site_mapping
from fedflow.attacks import AttackConfig
from fedflow.checkpoint import state_root
from fedflow.compression import build_codec
from fedflow.config import CompressionConfig, LocalTrainConfig, PrivacyConfig, StrategyConfig
from fedflow.errors import FedflowError
from fedflow.language.base_model import locate_base_model, weights_digest
from fedflow.language.options import language_options
from fedflow.secure_aggregation.masking import SecureRoundPlan, round_context
from fedflow.secure_aggregation.protocol import (
    PublicKeys,
    SecureAggregationError,
    SiteSecrets,
    plan_digest,
    reveal_shares,
    share_secrets,
)
from fedflow.seeding import derive_seed
from fedflow.signing import keys_root, load_private_key, sign_update
from fedflow.site import (
    UPLINK_RESIDUAL,
    LocalSite,
    local_audit_step,
    local_evaluate_step,
    local_train_step,
    read_site_data,
)
from fedflow.site_state import (
    forget_round_secrets,
    load_round_secrets,
    load_site_state,
    save_round_secrets,
    save_site_state,
)
from fedflow.tabular import Preprocessor, SiteStatistics
from fedflow.tasks import get_task
from fedflow.update import SiteUpdate
from validation import (
    ValidationSummary,
    class_minimum_check,
    failure_summary,
    validate_frame,
    validate_frames,
    with_check,
)


class SitePreparation(BaseModel):
    """What a site reports before training: its validation summary and, if it passed, aggregates."""

    summary: ValidationSummary
    statistics: SiteStatistics | None = None
    base_model_sha256: str | None = Field(
        default=None, description="Language tasks: the digest of the base model this site loads."
    )


class _SiteState:
    """Rows and derived arrays of the sites this process serves, keyed by run settings."""

    def __init__(self) -> None:
        self.sites: dict[tuple[str, str, float, int], LocalSite] = {}
        self.arrays: dict[tuple[str, str, float, int, str, str], Any] = {}
        self.lock = threading.Lock()


_STATE = _SiteState()


# Messages that may quote a site's data or paths go to the site's own log only: the Prefect run
# log is stored by the Prefect API, which the coordinator reads in cross-silo mode.
_LOCAL_LOG = logging.getLogger("fedflow.site")

# Private state that continues from the latest round trained, accepted or not.
_LATEST_STATE = ("dp_sgd_steps", UPLINK_RESIDUAL)


@functools.cache
def _domain(name: str) -> Domain:
    """Load a domain once per process: tasks run many times a round."""
    return load_domain(name)


def served_site_data(site: str) -> Path | None:
    """The data path a `fedflow site serve` process was started with, if it serves this site."""
    served, data = os.environ.get("FEDFLOW_SITE_NAME"), os.environ.get("FEDFLOW_SITE_DATA")
    return Path(data) if served == site and data else None


def site_data_path(domain: Domain, site: str, sites_file: str | None) -> Path:
    """The site's own data file: where its serve process says, else a sites YAML, else the config."""
    served = served_site_data(site)
    if served is not None:
        return served
    overrides = load_site_mapping(Path(sites_file)) if sites_file else None
    return domain.site_path(site, overrides)


def _scrub(message: str, path: Path) -> str:
    """Remove the site's file path from a message before it leaves the site."""
    return message.replace(str(path), "<data file>")


def _read_site(domain: Domain, site: str, sites_file: str | None) -> pd.DataFrame | SitePreparation:
    """The site's frame, or the preparation that excludes it (its reason scrubbed of the path)."""
    try:
        path = site_data_path(domain, site, sites_file)
    except FedflowError as error:
        return SitePreparation(summary=failure_summary(site, str(error)))
    overrides = load_site_mapping(Path(sites_file)) if sites_file else None
    try:
        simulated = served_site_data(site) is None and domain.is_simulated(site, overrides)
        return read_site_data(path, domain.spec, site=site, simulated=simulated)
    except (FedflowError, ValueError) as error:
        # The full message, path included, stays in the site's own log; the coordinator gets it scrubbed.
        _LOCAL_LOG.error("site %s cannot use its data: %s", site, error)
        return SitePreparation(summary=failure_summary(site, _scrub(str(error), path)))


def _finish_preparation(
    domain_name: str,
    site: str,
    frame: pd.DataFrame,
    summary: ValidationSummary,
    *,
    holdout_fraction: float,
    seed: int,
) -> SitePreparation:
    """After validation: split the rows, keep them at the site, share only the aggregates."""
    domain = _domain(domain_name)
    if not summary.success:
        return SitePreparation(summary=summary)
    try:
        labels = get_task(domain.spec.task).labels(frame, domain.spec) if domain.class_minimum else None
        local = LocalSite.from_frame(
            name=site, spec=domain.spec, frame=frame, holdout_fraction=holdout_fraction, seed=seed
        )
        statistics = local.statistics()
    except (ValueError, TypeError, KeyError) as error:
        # The message may quote values: full text in the site's log, only the kind leaves the site.
        _LOCAL_LOG.error("site %s: its data passed the checks but cannot be used: %s", site, error)
        reason = (
            f"site {site!r}: target or features could not be turned into numbers ({type(error).__name__})"
        )
        return SitePreparation(summary=failure_summary(site, reason).model_copy(update={"rows": len(frame)}))
    if labels is not None:
        summary = with_check(summary, class_minimum_check(labels, domain.class_minimum))
        if not summary.success:
            return SitePreparation(summary=summary)
    digest = None
    if domain.spec.task == "language":
        try:
            digest = weights_digest(locate_base_model(language_options(domain.spec.model)))
        except FedflowError as error:
            _LOCAL_LOG.error("site %s cannot load its base model: %s", site, error)
            return SitePreparation(
                summary=failure_summary(site, f"site {site!r} cannot find its base model (see its own log)")
            )
    with _STATE.lock:
        _STATE.sites[(domain_name, site, holdout_fraction, seed)] = local
    return SitePreparation(summary=summary, statistics=statistics, base_model_sha256=digest)


@task(name="site-validate", cache_policy=NO_CACHE, task_run_name="validate-{site}")
def prepare_site(
    domain_name: str, site: str, *, holdout_fraction: float, seed: int, sites_file: str | None = None
) -> SitePreparation:
    """Read the site's file, validate it with GX, split it, and share preprocessing aggregates."""
    domain = _domain(domain_name)
    frame = _read_site(domain, site, sites_file)
    if isinstance(frame, SitePreparation):
        return frame
    summary = validate_frame(frame, domain.expectations, site=site, suite_name=domain_name)
    return _finish_preparation(
        domain_name, site, frame, summary, holdout_fraction=holdout_fraction, seed=seed
    )


def prepare_sites(
    domain_name: str, sites: list[str], *, holdout_fraction: float, seed: int, sites_file: str | None = None
) -> dict[str, SitePreparation]:
    """`prepare_site` for many simulated sites at once, with one GX validation of all their rows.

    Simulation only (every site's rows are in this process anyway); see `validate_frames`.
    """
    domain = _domain(domain_name)
    out: dict[str, SitePreparation] = {}
    frames: dict[str, pd.DataFrame] = {}
    for site in sites:
        frame = _read_site(domain, site, sites_file)
        if isinstance(frame, SitePreparation):
            out[site] = frame
        else:
            frames[site] = frame
    summaries = validate_frames(frames, domain.expectations, suite_name=domain_name)
    for site, frame in frames.items():
        out[site] = _finish_preparation(
            domain_name, site, frame, summaries[site], holdout_fraction=holdout_fraction, seed=seed
        )
    return {site: out[site] for site in sites}


def _prepare_again(
    domain_name: str, site: str, holdout_fraction: float, seed: int, sites_file: str | None
) -> LocalSite:
    """Read and validate the site's rows again in this process, which has not prepared them.

    A served site runs every call in a fresh process, and a Dask worker may get a site whose
    validation ran on another worker: neither trains on rows that did not pass the checks here.
    """
    preparation = prepare_site.fn(
        domain_name, site, holdout_fraction=holdout_fraction, seed=seed, sites_file=sites_file
    )
    if preparation.statistics is None:
        failed = sum(not check.success for check in preparation.summary.checks)
        raise FedflowError(
            f"site {site!r}: its data no longer passes its checks ({failed} failing; see the site's own log)"
        )
    with _STATE.lock:
        return _STATE.sites[(domain_name, site, holdout_fraction, seed)]


def _site_arrays(
    domain_name: str,
    site: str,
    holdout_fraction: float,
    seed: int,
    preprocessor: Preprocessor,
    part: str,
    sites_file: str | None,
) -> Any:
    key = (domain_name, site, holdout_fraction, seed, preprocessor.model_dump_json(), part)
    with _STATE.lock:
        cached = _STATE.arrays.get(key)
        local = _STATE.sites.get((domain_name, site, holdout_fraction, seed))
    if cached is not None:
        return cached
    if local is None:
        local = _prepare_again(domain_name, site, holdout_fraction, seed, sites_file)
    arrays = local.arrays(preprocessor, part)
    with _STATE.lock:
        _STATE.arrays[key] = arrays
    return arrays


def _round_secrets(
    federation_id: str, site: str, round_number: int, plan: SecureRoundPlan | None = None
) -> SiteSecrets:
    """This round's secrets; with a `plan`, only if it is the roster and threshold the site shared under."""
    arrays = load_round_secrets(state_root(), federation_id, site, round_number)
    if arrays is None:
        raise FedflowError(f"site {site!r} holds no secure-aggregation keys for round {round_number}")
    if plan is not None:
        if plan.context != round_context(federation_id, round_number):
            raise SecureAggregationError(f"site {site!r}: the plan is bound to another federation or round")
        agreed = arrays.get("plan_digest")
        presented = plan_digest(plan.roster, plan.threshold, plan.context)
        if agreed is None or np.asarray(agreed, dtype=np.uint8).tobytes() != presented:
            raise SecureAggregationError(
                f"site {site!r}: the roster or threshold is not the one it shared under"
            )
    return SiteSecrets.from_arrays(arrays)


@task(
    name="site-secagg-advertise", cache_policy=NO_CACHE, task_run_name="advertise-{site}-round-{round_number}"
)
def advertise_keys(domain_name: str, site: str, *, federation_id: str, round_number: int) -> PublicKeys:
    """Secure aggregation, phase 1: fresh key pairs and seed kept on the site's disk; public keys out."""
    secrets = SiteSecrets.generate()
    save_round_secrets(state_root(), federation_id, site, round_number, secrets.to_arrays())
    return secrets.public()


@task(name="site-secagg-share", cache_policy=NO_CACHE, task_run_name="share-{site}-round-{round_number}")
def share_keys(
    domain_name: str,
    site: str,
    *,
    federation_id: str,
    round_number: int,
    roster: dict[str, PublicKeys],
    threshold: int,
    context: bytes,
) -> dict[str, bytes]:
    """Phase 2: Shamir shares of the site's mask key and seed, encrypted for each roster member."""
    if context != round_context(federation_id, round_number):
        raise SecureAggregationError(f"site {site!r}: the context is bound to another federation or round")
    secrets = _round_secrets(federation_id, site, round_number)
    shares = share_secrets(secrets, site=site, roster=roster, threshold=threshold, context=context)
    # Later phases must present this roster and threshold: the site remembers what it agreed to.
    agreed = np.frombuffer(plan_digest(roster, threshold, context), dtype=np.uint8).copy()
    save_round_secrets(
        state_root(), federation_id, site, round_number, {**secrets.to_arrays(), "plan_digest": agreed}
    )
    return shares


@task(name="site-secagg-unmask", cache_policy=NO_CACHE, task_run_name="unmask-{site}-round-{round_number}")
def reveal_for_unmasking(
    domain_name: str,
    site: str,
    *,
    federation_id: str,
    round_number: int,
    ciphertexts: dict[str, bytes],
    plan: SecureRoundPlan,
    survivors: list[str],
) -> dict[str, bytes]:
    """Phase 4: the shares the coordinator needs to unmask the survivors' sum; answered only once."""
    secrets = _round_secrets(federation_id, site, round_number, plan)
    revealed = reveal_shares(
        secrets,
        site=site,
        ciphertexts=ciphertexts,
        roster=plan.roster,
        survivors=survivors,
        threshold=plan.threshold,
        context=plan.context,
    )
    forget_round_secrets(state_root(), federation_id, site, round_number)
    return revealed


@task(name="site-train", cache_policy=NO_CACHE, task_run_name="train-{site}-round-{round_number}")
def train_site(
    domain_name: str,
    site: str,
    *,
    round_number: int,
    federation_id: str,
    global_payload: bytes,
    preprocessor: Preprocessor,
    local_config: LocalTrainConfig,
    holdout_fraction: float,
    seed: int,
    strategy: StrategyConfig | None = None,
    accepted_round: int = 0,
    class_weights: list[float] | None = None,
    attack: AttackConfig | None = None,
    keys_dir: str | None = None,
    privacy: PrivacyConfig | None = None,
    sites_in_round: int = 1,
    secure: SecureRoundPlan | None = None,
    compression: CompressionConfig | None = None,
    sites_file: str | None = None,
) -> SiteUpdate:
    """One local step: train the global model on the site's training rows, return the delta."""
    domain = _domain(domain_name)
    features, labels = _site_arrays(
        domain_name, site, holdout_fraction, seed, preprocessor, "train", sites_file
    )
    # The site's private state lives on its disk per round, so a resumed run repeats exactly.
    # SCAFFOLD's control continues from the last round whose update was accepted (a dropped
    # update must not move it); DP-SGD's step count from the latest round (privacy was spent
    # even if the coordinator dropped the update).
    private = load_site_state(state_root(), federation_id, site, before_round=accepted_round + 1) or {}
    latest = load_site_state(state_root(), federation_id, site, before_round=round_number) or {}
    # So does the codec's residual: what the site computed but has not sent yet.
    private = {k: v for k, v in private.items() if k not in _LATEST_STATE}
    private.update({k: latest[k] for k in _LATEST_STATE if k in latest})
    result = local_train_step(
        site=site,
        round_number=round_number,
        spec=domain.spec,
        factory=domain.build_model,
        global_payload=global_payload,
        features=features,
        labels=labels,
        config=local_config,
        seed=seed,
        strategy=strategy,
        site_state=private,
        class_weights=class_weights,
        attack=attack,
        privacy=privacy,
        sites_in_round=sites_in_round,
        masking=None
        if secure is None
        else (_round_secrets(federation_id, site, round_number, secure), secure),
        codec=None if compression is None else build_codec(compression.codec, compression.options),
    )
    if result.site_state:
        save_site_state(state_root(), federation_id, site, round_number, result.site_state)
    key = load_private_key(Path(keys_dir) if keys_dir else keys_root(), site)
    if key is None:
        return result.update
    signature = sign_update(
        key, federation_id=federation_id, round_number=round_number, site=site, payload=result.update.payload
    )
    return dataclasses.replace(result.update, signature=signature)


@task(name="site-audit", cache_policy=NO_CACHE, task_run_name="audit-{site}")
def audit_site(
    domain_name: str,
    site: str,
    *,
    final_payload: bytes,
    reference_payload: bytes,
    preprocessor: Preprocessor,
    holdout_fraction: float,
    seed: int,
    shadow_models: int = 0,
    shadow_config: LocalTrainConfig | None = None,
    sites_file: str | None = None,
) -> dict[str, float]:
    """Membership-inference audit of the final model against this site's rows."""
    domain = _domain(domain_name)
    return local_audit_step(
        spec=domain.spec,
        factory=domain.build_model,
        final_payload=final_payload,
        reference_payload=reference_payload,
        train=_site_arrays(domain_name, site, holdout_fraction, seed, preprocessor, "train", sites_file),
        holdout=_site_arrays(domain_name, site, holdout_fraction, seed, preprocessor, "holdout", sites_file),
        shadow_models=shadow_models,
        shadow_config=shadow_config,
        seed=derive_seed(seed, "audit", site),
    )


@task(name="site-evaluate", cache_policy=NO_CACHE, task_run_name="evaluate-{site}-round-{round_number}")
def evaluate_site(
    domain_name: str,
    site: str,
    *,
    round_number: int,
    global_payload: bytes,
    preprocessor: Preprocessor,
    holdout_fraction: float,
    seed: int,
    local_config: LocalTrainConfig | None = None,
    personalization_steps: int = 0,
    sites_file: str | None = None,
) -> dict[str, float]:
    """Evaluate the global model on the site's hold-out rows; only metrics leave the site.

    With `personalization_steps`, also fine-tune a copy on the site's training rows first.
    """
    domain = _domain(domain_name)
    features, labels = _site_arrays(
        domain_name, site, holdout_fraction, seed, preprocessor, "holdout", sites_file
    )
    personalization = None
    if personalization_steps > 0 and local_config is not None:
        train_x, train_y = _site_arrays(
            domain_name, site, holdout_fraction, seed, preprocessor, "train", sites_file
        )
        tune_seed = derive_seed(seed, "personalise", round_number, site)
        personalization = (train_x, train_y, local_config, personalization_steps, tune_seed)
    return local_evaluate_step(
        spec=domain.spec,
        factory=domain.build_model,
        global_payload=global_payload,
        features=features,
        labels=labels,
        personalization=personalization,
    )
