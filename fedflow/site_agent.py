"""The site side of the round protocol: one object that answers the coordinator's typed requests.

A site agent is built from the site's own settings (its rows, its keys, its state folder) and
is the same in simulation and cross-silo mode; only the channel that brings it requests
differs. What it returns is what may cross the site boundary: summaries, aggregates, encoded
updates and metrics. Messages that could quote the site's data or paths go to the site's own
log ("fedflow.site") only.
"""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fedflow.domain import DomainSpec
from fedflow.errors import FedflowError
from fedflow.messages import (
    AdvertiseReply,
    AdvertiseRequest,
    AuditReply,
    AuditRequest,
    EvaluateReply,
    EvaluateRequest,
    Message,
    PrepareReply,
    PrepareRequest,
    ShareReply,
    ShareRequest,
    SignedRequest,
    SiteRows,
    TrainReply,
    TrainRequest,
    UnmaskReply,
    UnmaskRequest,
)
from fedflow.params import get_weights
from fedflow.privacy.site_audit import AuditInputs, local_audit_step
from fedflow.secure_aggregation.advertised_keys import check_roster, sign_keys
from fedflow.secure_aggregation.masking import SecureRoundPlan, round_context
from fedflow.secure_aggregation.protocol import (
    SecureAggregationError,
    SiteSecrets,
    check_members,
    plan_digest,
    reveal_shares,
    share_secrets,
)
from fedflow.seeding import derive_seed
from fedflow.signing import load_private_key, load_public_key
from fedflow.site import LocalSite, ModelFactory, SiteModels, build_global_model, read_site_data
from fedflow.site_authentication import SiteAuthenticator
from fedflow.site_evaluation import Personalisation, local_evaluate_step
from fedflow.site_guard import SiteGuard
from fedflow.site_policy import SitePolicy
from fedflow.site_state import (
    claim_secure_aggregation_phase,
    forget_round_secrets,
    load_round_secrets,
    save_round_secrets,
    save_site_state,
    site_noise_key,
    state_for_round,
)
from fedflow.tabular import UnsafeStatisticsError
from fedflow.tasks import TaskKind, get_task
from fedflow.update_path import SiteWork, run_update_path
from fedflow.update_path.chain import SiteKeys, update_path
from fedflow.validation_summary import (
    ValidationSummary,
    class_minimum_check,
    failure_summary,
    with_check,
)

_LOCAL_LOG = logging.getLogger("fedflow.site")
# What a site records of a round's secure aggregation: the plan it shared under, the one it masked with.
_SHARED_UNDER = "plan_digest"
_MASKED_WITH = "masked_with_digest"


class FrameValidator(Protocol):
    """Checks a site's rows against the domain's data contract (Great Expectations, outside the engine)."""

    def __call__(self, frame: pd.DataFrame, *, site: str) -> ValidationSummary:
        """The privacy-safe summary of the checks."""
        ...


@dataclass(frozen=True)
class SiteData:
    """Where a site's rows are: its own file (or folder), or its share of a partitioned table."""

    path: Path | None = None
    simulated: bool = False
    problem: str | None = None  # why there is no path (said to the coordinator as it is)


@dataclass(frozen=True)
class SiteSettings:
    """Everything a site decides for itself; nothing here comes from the coordinator."""

    name: str
    spec: DomainSpec
    build_model: ModelFactory
    data: SiteData
    validator: FrameValidator
    state_dir: Path
    keys_dir: Path
    accepts_simulated_attacks: bool = True  # simulation only: a served site refuses them
    accepts_reproducible_noise: bool = True  # simulation only: a served site refuses seeded DP noise
    policy: SitePolicy = field(default_factory=SitePolicy)  # the defaults are the strict ones
    model_sha256: str | None = None  # of the site's own model.py: the model it trains


def _scrub(message: str, path: Path | None) -> str:
    """Remove the site's data path from a message before it leaves the site."""
    return message if path is None else message.replace(str(path), "<data file>")


class SiteAgent:
    """Answers prepare, train, evaluate, audit and secure-aggregation requests for one site."""

    def __init__(self, settings: SiteSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.task: TaskKind = get_task(settings.spec.task)
        self.models = SiteModels(spec=settings.spec, factory=settings.build_model)
        self.guard = SiteGuard(
            site=settings.name,
            policy=settings.policy,
            state_dir=settings.state_dir,
            model_sha256=settings.model_sha256,
        )
        self.authenticator = SiteAuthenticator(
            site=settings.name,
            keys_dir=settings.keys_dir,
            state_dir=settings.state_dir,
            required=settings.policy.require_authentication,
        )
        self._split: dict[tuple[float, int], LocalSite] = {}
        self._arrays: dict[tuple[float, int, str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()
        # The rows and their checks, kept while the file is unchanged (size, mtime, inode).
        self._validated: tuple[tuple[int, int, int], pd.DataFrame, ValidationSummary] | None = None
        self._handlers: dict[type[Message], Callable[[Any], Message]] = {
            PrepareRequest: self.prepare,
            TrainRequest: self.train,
            EvaluateRequest: self.evaluate,
            AuditRequest: self.audit,
            AdvertiseRequest: self.advertise,
            ShareRequest: self.share,
            UnmaskRequest: self.unmask,
        }

    def handle(self, request: Message) -> Message:
        """The reply to any request of the protocol; a request the coordinator signed (a
        `SignedRequest`) gets the site's signed reply, and an unsigned one is refused when the site's
        policy requires authentication."""
        if isinstance(request, SignedRequest):
            return self.authenticator.answer(request, self._answer)
        self.authenticator.admit_unsigned(request)
        return self._answer(request)

    def _answer(self, request: Message) -> Message:
        """The reply to a plain request, once the site's policy admits it."""
        handler = self._handlers.get(type(request))
        if handler is None:
            raise TypeError(f"site {self.name!r} does not answer {type(request).__name__}")
        self.guard.admit(request)
        return handler(request)

    # --- preparation -------------------------------------------------------------------------

    def read_rows(self) -> pd.DataFrame | PrepareReply:
        """The site's frame, or the reply that excludes it (its reason scrubbed of the path)."""
        data = self.settings.data
        if data.problem is not None or data.path is None:
            return PrepareReply(summary=failure_summary(self.name, data.problem or "no data path"))
        try:
            return read_site_data(data.path, self.settings.spec, site=self.name, simulated=data.simulated)
        except (FedflowError, ValueError) as error:
            _LOCAL_LOG.error("site %s cannot use its data: %s", self.name, error)
            return PrepareReply(summary=failure_summary(self.name, _scrub(str(error), data.path)))

    def prepare(self, request: PrepareRequest) -> PrepareReply:
        """Read and validate the rows, split them, and share aggregates of the training rows."""
        validated = self.validated_rows()
        if isinstance(validated, PrepareReply):
            return validated
        return self.finish_preparation(*validated, request)

    def _fingerprint(self) -> tuple[int, int, int] | None:
        """What tells a changed data file (None: a folder, or no file: always read again)."""
        path = self.settings.data.path
        if path is None or not path.is_file():
            return None
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns, stat.st_ino

    def validated_rows(self) -> tuple[pd.DataFrame, ValidationSummary] | PrepareReply:
        """The site's rows and their checks: read and validated again only when the file changed."""
        fingerprint = self._fingerprint()
        with self._lock:
            cached = self._validated
        if cached is not None and fingerprint is not None and cached[0] == fingerprint:
            return cached[1].copy(), cached[2]
        frame = self.read_rows()
        if isinstance(frame, PrepareReply):
            return frame
        summary = self.settings.validator(frame, site=self.name)
        if fingerprint is not None:
            with self._lock:
                self._validated = (fingerprint, frame.copy(), summary)
        return frame, summary

    def finish_preparation(
        self, frame: pd.DataFrame, summary: ValidationSummary, request: PrepareRequest
    ) -> PrepareReply:
        """After validation: split the rows, keep them here, share only the aggregates."""
        if not summary.success:
            return PrepareReply(summary=summary)
        spec = self.settings.spec
        minimum = spec.quality.min_rows_per_class if self.task.has_classes else 0
        try:
            labels = self.task.labels(frame, spec) if minimum else None
            holdout_fraction, seed = self.guard.split(request.holdout_fraction, request.seed)
            local = LocalSite.from_frame(
                name=self.name, spec=spec, frame=frame, holdout_fraction=holdout_fraction, seed=seed
            )
            statistics = local.statistics()
        except (ValueError, TypeError, KeyError) as error:
            # The message may quote values: full text in the site's log, only the kind leaves the site.
            _LOCAL_LOG.error("site %s: its data passed the checks but cannot be used: %s", self.name, error)
            reason = (
                f"site {self.name!r}: {error}"  # names the column, never a value
                if isinstance(error, UnsafeStatisticsError)
                else f"site {self.name!r}: target or features could not be turned into numbers "
                f"({type(error).__name__})"
            )
            return PrepareReply(
                summary=failure_summary(self.name, reason).model_copy(update={"rows": len(frame)})
            )
        if labels is not None:
            summary = with_check(summary, class_minimum_check(labels, minimum))
            if not summary.success:
                return PrepareReply(summary=summary)
        digest = self._base_model_digest()
        if isinstance(digest, PrepareReply):
            return digest
        key = self.guard.split(request.holdout_fraction, request.seed)
        with self._lock:
            self._split[key] = local
            # Rows read again (a new run, a changed file): arrays made from the old ones are stale.
            self._arrays = {k: v for k, v in self._arrays.items() if k[:2] != key}
        return PrepareReply(summary=summary, statistics=statistics, base_model_sha256=digest)

    def _base_model_digest(self) -> str | PrepareReply | None:
        """The digest of the frozen base model this site loads (tasks that fine-tune adapters)."""
        try:
            base = self.task.frozen_base(self.settings.spec)
        except FedflowError as error:
            _LOCAL_LOG.error("site %s cannot load its base model: %s", self.name, error)
            reason = f"site {self.name!r} cannot find its base model (see its own log)"
            return PrepareReply(summary=failure_summary(self.name, reason))
        return None if base is None else base.sha256

    def _split_for(self, holdout_fraction: float, seed: int) -> LocalSite:
        """The split made at preparation; made again, after validating again, in a fresh process.

        A served site or a Dask worker may be asked to train without having prepared in this
        process: it never trains on rows that did not pass the checks here.
        """
        key = self.guard.split(holdout_fraction, seed)
        with self._lock:
            local = self._split.get(key)
        if local is not None:
            return local
        reply = self.prepare(PrepareRequest(federation_id="", holdout_fraction=holdout_fraction, seed=seed))
        if reply.statistics is None:
            failed = sum(not check.success for check in reply.summary.checks)
            raise FedflowError(
                f"site {self.name!r}: its data no longer passes its checks "
                f"({failed} failing; see the site's own log)"
            )
        with self._lock:
            return self._split[key]

    def arrays(self, rows: SiteRows, part: str) -> tuple[np.ndarray, np.ndarray]:
        """Features and labels of the `train` or `holdout` part, preprocessed (cached per preprocessor)."""
        key = (*self.guard.split(rows.holdout_fraction, rows.seed), rows.preprocessor.model_dump_json(), part)
        with self._lock:
            cached = self._arrays.get(key)
        if cached is not None:
            return cached
        arrays = self._split_for(rows.holdout_fraction, rows.seed).arrays(rows.preprocessor, part)
        with self._lock:
            self._arrays[key] = arrays
        return arrays

    # --- training, evaluation, audit ---------------------------------------------------------

    def train(self, request: TrainRequest) -> TrainReply:
        """One local step through the update path; the site's private state stays on its disk."""
        if request.attack is not None and not self.settings.accepts_simulated_attacks:
            raise FedflowError("simulated attacks are for simulation only; a served site refuses them")
        features, labels = self.arrays(request.rows, "train")
        spent = self.guard.before_training(request, len(features))
        spec = self.settings.spec
        model, broadcast = build_global_model(
            self.settings.build_model,
            input_dim=features.shape[1],
            output_dim=self.task.output_dim(spec),
            options=spec.model,
            weights_payload=request.global_payload,
        )
        # The site's private state lives on its disk per round, so a resumed run repeats exactly.
        state = state_for_round(
            self.settings.state_dir,
            request.federation_id,
            self.name,
            round_number=request.round,
            accepted_round=request.accepted_round,
        )
        keys = SiteKeys(
            secure_aggregation=None
            if request.secure is None
            else self._secrets(request.federation_id, request.round, request.secure),
            noise=site_noise_key(self.settings.state_dir, request.federation_id, self.name),
            accepts_reproducible_noise=self.settings.accepts_reproducible_noise,
        )
        steps = update_path(
            request, site=self.name, task=self.task, num_classes=max(self.task.output_dim(spec), 2), keys=keys
        )
        work = SiteWork(
            site=self.name,
            round=request.round,
            seed=request.rows.seed,
            features=features,
            labels=labels,
            model=model,
            start=get_weights(model),
            broadcast=broadcast,
            state=state,
        )
        work = run_update_path(steps, work)
        kept = {**state, **work.new_state}
        if kept:
            save_site_state(self.settings.state_dir, request.federation_id, self.name, request.round, kept)
        self.guard.after_training(request, spent)
        return TrainReply(
            num_examples=work.num_examples,
            payload=work.payload,
            metrics=work.metrics,
        )

    def evaluate(self, request: EvaluateRequest) -> EvaluateReply:
        """The global model's metrics on the hold-out (with personalisation: after fine-tuning too)."""
        holdout = self.arrays(request.rows, "holdout")
        self.guard.check_holdout(len(holdout[1]))
        personalisation = None
        if request.personalization_steps > 0:
            train_x, train_y = self.arrays(request.rows, "train")
            personalisation = Personalisation(
                features=train_x,
                labels=train_y,
                config=request.local,
                steps=request.personalization_steps,
                seed=derive_seed(request.rows.seed, "personalise", request.round, self.name),
            )
        metrics = local_evaluate_step(self.models, request.global_payload, holdout, personalisation)
        return EvaluateReply(metrics=metrics)

    def audit(self, request: AuditRequest) -> AuditReply:
        """Membership-inference attacks on the final model with this site's own rows."""
        inputs = AuditInputs(
            final_payload=request.final_payload,
            reference_payload=request.reference_payload,
            train=self.arrays(request.rows, "train"),
            holdout=self.guard_holdout(request.rows),
            shadow_models=request.shadow_models,
            shadow_config=request.shadow_config,
            seed=derive_seed(request.rows.seed, "audit", self.name),
        )
        return AuditReply(scores=local_audit_step(self.models, inputs))

    def guard_holdout(self, rows: SiteRows) -> tuple[np.ndarray, np.ndarray]:
        """The hold-out's arrays, if the policy allows working on a hold-out that small."""
        holdout = self.arrays(rows, "holdout")
        self.guard.check_holdout(len(holdout[1]))
        return holdout

    # --- secure aggregation ------------------------------------------------------------------

    def advertise(self, request: AdvertiseRequest) -> AdvertiseReply:
        """Phase 1, once per round: fresh key pairs and seed kept on the site's disk; the public keys
        out, signed with the site's own key when it has one."""
        self._answer_once(request.federation_id, request.round, "advertise")
        secrets = SiteSecrets.generate()
        root = self.settings.state_dir
        save_round_secrets(root, request.federation_id, self.name, request.round, secrets.to_arrays())
        keys = secrets.public()
        signing = load_private_key(self.settings.keys_dir, self.name)
        if signing is None:
            return AdvertiseReply(public_keys=keys)
        signature = sign_keys(
            signing,
            federation_id=request.federation_id,
            round_number=request.round,
            site=self.name,
            keys=keys,
        )
        return AdvertiseReply(public_keys=keys, signature=signature)

    def share(self, request: ShareRequest) -> ShareReply:
        """Phase 2, once per round: Shamir shares of the mask key and seed, encrypted for each roster
        member, once every other member's keys are checked (and their signatures, see `_check_roster`)."""
        context = round_context(request.federation_id, request.round)
        if request.context != context:
            raise SecureAggregationError(
                f"site {self.name!r}: the context is bound to another federation or round"
            )
        secrets = self._secrets(request.federation_id, request.round)
        self._check_roster(request)
        shares = share_secrets(
            secrets, site=self.name, roster=request.roster, threshold=request.threshold, context=context
        )
        self._answer_once(request.federation_id, request.round, "share")
        # Later phases must present this roster and threshold: the site remembers what it agreed to.
        agreed = np.frombuffer(plan_digest(request.roster, request.threshold, context), dtype=np.uint8).copy()
        arrays = {**secrets.to_arrays(), _SHARED_UNDER: agreed}
        save_round_secrets(self.settings.state_dir, request.federation_id, self.name, request.round, arrays)
        return ShareReply(ciphertexts=shares)

    def unmask(self, request: UnmaskRequest) -> UnmaskReply:
        """Phase 4, once per round: the shares the coordinator needs to unmask the survivors' sum, only
        under the plan this site masked with and for survivors among its members."""
        arrays = self._round_secrets(request.federation_id, request.round)
        self._check_plan(arrays, request.federation_id, request.round, request.plan)
        masked_with = arrays.get(_MASKED_WITH)
        if masked_with is None:
            raise SecureAggregationError(
                f"site {self.name!r} masked no update in round {request.round}; it reveals no shares"
            )
        if np.asarray(masked_with, dtype=np.uint8).tobytes() != request.plan.terms().digest():
            raise SecureAggregationError(
                f"site {self.name!r}: the members are not the ones it masked with; refusing to reveal shares"
            )
        revealed = reveal_shares(
            SiteSecrets.from_arrays(arrays),
            site=self.name,
            ciphertexts=request.ciphertexts,
            terms=request.plan.terms(),
            survivors=request.survivors,
        )
        self._answer_once(request.federation_id, request.round, "unmask")
        forget_round_secrets(self.settings.state_dir, request.federation_id, self.name, request.round)
        return UnmaskReply(shares=revealed)

    def _secrets(
        self, federation_id: str, round_number: int, plan: SecureRoundPlan | None = None
    ) -> SiteSecrets:
        """This round's secrets. With a `plan` (the train step, which masks with them; once per round):
        only if it is the roster and threshold shared under, and the plan's members are then recorded,
        so that unmasking answers only for the members the update was masked with."""
        arrays = self._round_secrets(federation_id, round_number)
        if plan is not None:
            self._check_plan(arrays, federation_id, round_number, plan)
            check_members(self.name, plan.terms())
            self._answer_once(federation_id, round_number, "mask")
            recorded = {**arrays, _MASKED_WITH: np.frombuffer(plan.terms().digest(), dtype=np.uint8).copy()}
            save_round_secrets(self.settings.state_dir, federation_id, self.name, round_number, recorded)
        return SiteSecrets.from_arrays(arrays)

    def _round_secrets(self, federation_id: str, round_number: int) -> dict[str, np.ndarray]:
        """What the site keeps of this round on its disk (keys, seed, what it agreed to)."""
        arrays = load_round_secrets(self.settings.state_dir, federation_id, self.name, round_number)
        if arrays is None:
            raise FedflowError(
                f"site {self.name!r} holds no secure-aggregation keys for round {round_number}"
            )
        return dict(arrays)

    def _check_plan(
        self, arrays: dict[str, np.ndarray], federation_id: str, round_number: int, plan: SecureRoundPlan
    ) -> None:
        """Refuse a plan of another round, or with another roster or threshold than shared under."""
        if plan.context != round_context(federation_id, round_number):
            raise SecureAggregationError(
                f"site {self.name!r}: the plan is bound to another federation or round"
            )
        agreed = arrays.get(_SHARED_UNDER)
        presented = plan_digest(plan.roster, plan.threshold, plan.context)
        if agreed is None or np.asarray(agreed, dtype=np.uint8).tobytes() != presented:
            raise SecureAggregationError(
                f"site {self.name!r}: the roster or threshold is not the one it shared under"
            )

    def _check_roster(self, request: ShareRequest) -> None:
        """Every member's keys well formed; another member's signed by it where this site demands it:
        for every member when the federation requires authentication, and, once this site signs its
        own keys, for every member whose public key (`<member>.pub`) is in the site's key folder."""
        keys_dir = self.settings.keys_dir
        signs = (keys_dir / f"{self.name}.key").is_file()

        def public_key_of(member: str) -> Ed25519PublicKey | None:
            return load_public_key(keys_dir, member)

        def demanded(member: str) -> bool:
            if member == self.name:
                return False  # its own keys are checked against its secrets when it shares
            return request.require_signatures or (signs and public_key_of(member) is not None)

        check_roster(
            request.roster,
            request.signatures,
            federation_id=request.federation_id,
            round_number=request.round,
            public_key_of=public_key_of,
            demanded=demanded,
        )

    def _answer_once(self, federation_id: str, round_number: int, phase: str) -> None:
        """Refuse a phase of secure aggregation this site already answered in this round."""
        root = self.settings.state_dir
        if not claim_secure_aggregation_phase(root, federation_id, self.name, round_number, phase):
            raise SecureAggregationError(
                f"site {self.name!r} already answered the {phase} phase of round {round_number} of "
                f"federation {federation_id!r}; each phase is answered once per round"
            )
