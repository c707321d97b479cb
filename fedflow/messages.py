"""Every request the coordinator sends a site, and every reply, as versioned pydantic models.

The same objects travel in simulation (handed to a site agent in this process) and cross-silo
(JSON on the exchange: bytes as base64, model payloads as safetensors inside them). Nothing in
a message is pickled or names code to import. A request knows its reply type, so a channel can
check what came back; `SiteRequest` is the union a site accepts, told apart by `kind`. With
`authentication.required`, every request travels sealed in a `SignedRequest` and every reply in a
`SignedReply` (`fedflow.envelope`).
"""

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from fedflow.attacks import AttackConfig
from fedflow.config import CompressionConfig, LocalTrainConfig, PrivacyConfig, StrategyConfig
from fedflow.secure_aggregation.masking import SecureRoundPlan
from fedflow.secure_aggregation.protocol import PublicKeys
from fedflow.tabular import Preprocessor, SiteStatistics
from fedflow.validation_summary import ValidationSummary

PROTOCOL_VERSION: Literal[1] = 1


class Message(BaseModel):
    """What every message shares: the protocol version, strict fields, bytes as base64 in JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    version: Literal[1] = PROTOCOL_VERSION


class PrepareReply(Message):
    """A site's validation summary and, if it passed, the aggregates of its training rows."""

    kind: Literal["prepare-reply"] = "prepare-reply"
    summary: ValidationSummary
    statistics: SiteStatistics | None = None
    base_model_sha256: str | None = Field(
        default=None, description="Tasks on a frozen base model: the digest of the one this site loads."
    )


class PrepareRequest(Message):
    """Validate your rows, split off your hold-out, and share aggregates of the training rows."""

    reply_type: ClassVar[type[Message]] = PrepareReply
    kind: Literal["prepare"] = "prepare"
    federation_id: str
    model_sha256: str | None = Field(default=None, description="The model.py the coordinator trains.")
    holdout_fraction: float = Field(ge=0, lt=1)
    seed: int = Field(ge=0)


class SiteRows(Message):
    """Which of its rows a site works on: the split it made when it prepared."""

    holdout_fraction: float = Field(ge=0, lt=1)
    seed: int = Field(ge=0)
    preprocessor: Preprocessor


class TrainReply(Message):
    """A site's encoded update: no rows, no paths, no pickles."""

    kind: Literal["train-reply"] = "train-reply"
    num_examples: int
    payload: bytes
    metrics: dict[str, float] = Field(default_factory=dict)


class TrainRequest(Message):
    """Train the global model on your training rows and send the update back."""

    reply_type: ClassVar[type[Message]] = TrainReply
    kind: Literal["train"] = "train"
    federation_id: str
    model_sha256: str | None = None
    round: int = Field(ge=1)
    rows: SiteRows
    global_payload: bytes
    local: LocalTrainConfig
    strategy: StrategyConfig
    accepted_round: int = Field(default=0, ge=0, description="The last round this site's update was kept.")
    class_weights: list[float] | None = None
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    sites_in_round: int = Field(default=1, ge=1)
    secure: SecureRoundPlan | None = None
    compression: CompressionConfig = Field(default_factory=CompressionConfig)
    attack: AttackConfig | None = None


class EvaluateReply(Message):
    """The global model's metrics on the site's hold-out (and, personalised, after fine-tuning)."""

    kind: Literal["evaluate-reply"] = "evaluate-reply"
    metrics: dict[str, float]


class EvaluateRequest(Message):
    """Score the global model on your hold-out rows."""

    reply_type: ClassVar[type[Message]] = EvaluateReply
    kind: Literal["evaluate"] = "evaluate"
    federation_id: str
    model_sha256: str | None = None
    round: int = Field(ge=1)
    rows: SiteRows
    global_payload: bytes
    local: LocalTrainConfig
    personalization_steps: int = Field(default=0, ge=0)


class AuditReply(Message):
    """Membership-inference attack scores against the site's own rows."""

    kind: Literal["audit-reply"] = "audit-reply"
    scores: dict[str, float]


class AuditRequest(Message):
    """Attack the final model with your rows (training rows against hold-out) and report scores."""

    reply_type: ClassVar[type[Message]] = AuditReply
    kind: Literal["audit"] = "audit"
    federation_id: str
    model_sha256: str | None = None
    rows: SiteRows
    final_payload: bytes
    reference_payload: bytes
    shadow_models: int = Field(default=0, ge=0)
    shadow_config: LocalTrainConfig = Field(default_factory=LocalTrainConfig)


class AdvertiseReply(Message):
    """Secure aggregation, phase 1: the site's fresh public keys."""

    kind: Literal["secagg-advertise-reply"] = "secagg-advertise-reply"
    public_keys: PublicKeys
    signature: bytes = Field(
        default=b"",
        description="The site's Ed25519 signature of its keys, bound to federation, round and site "
        "(empty when the site has no signing key).",
    )


class AdvertiseRequest(Message):
    """Make this round's key pairs and self-mask seed; keep them; send the public keys."""

    reply_type: ClassVar[type[Message]] = AdvertiseReply
    kind: Literal["secagg-advertise"] = "secagg-advertise"
    federation_id: str
    round: int = Field(ge=1)


class ShareReply(Message):
    """Phase 2: the site's Shamir shares, encrypted for each roster member."""

    kind: Literal["secagg-share-reply"] = "secagg-share-reply"
    ciphertexts: dict[str, bytes]


class ShareRequest(Message):
    """Share your mask key and seed t-of-n with this roster."""

    reply_type: ClassVar[type[Message]] = ShareReply
    kind: Literal["secagg-share"] = "secagg-share"
    federation_id: str
    round: int = Field(ge=1)
    roster: dict[str, PublicKeys]
    threshold: int = Field(ge=1)
    context: bytes
    signatures: dict[str, bytes] = Field(
        default_factory=dict, description="Each roster member's signature of its advertised keys."
    )
    require_signatures: bool = Field(
        default=False, description="authentication.required: every member's keys must be signed."
    )


class UnmaskReply(Message):
    """Phase 4: the shares the coordinator needs to remove the masks of the survivors' sum."""

    kind: Literal["secagg-unmask-reply"] = "secagg-unmask-reply"
    shares: dict[str, bytes]


class UnmaskRequest(Message):
    """Reveal your shares for these survivors (answered once per round)."""

    reply_type: ClassVar[type[Message]] = UnmaskReply
    kind: Literal["secagg-unmask"] = "secagg-unmask"
    federation_id: str
    round: int = Field(ge=1)
    ciphertexts: dict[str, bytes]
    plan: SecureRoundPlan
    survivors: list[str]


class RefusalReply(Message):
    """A site's policy refused the request: which rule refused, never anything about the rows."""

    kind: Literal["refusal"] = "refusal"
    category: str = Field(max_length=200)


_CALL_ID = r"^[0-9a-f]{32}$"
_SHA256 = r"^[0-9a-f]{64}$"


class SignedReply(Message):
    """A site's reply, signed with the site's key, bound to the call it answers (`fedflow.envelope`)."""

    kind: Literal["signed-reply"] = "signed-reply"
    site: str = Field(max_length=200)
    federation_id: str = Field(max_length=200)
    round: int = Field(default=0, ge=0)
    call_id: str = Field(pattern=_CALL_ID)
    request_sha256: str = Field(pattern=_SHA256, description="SHA-256 of the request body it answers.")
    body: str = Field(description="The reply's JSON, exactly as signed (a refusal, too, is signed).")
    key_id: str = Field(
        default="", max_length=64, description="The signing key's fingerprint: for error messages only."
    )
    signature: bytes = Field(max_length=64)


class SignedRequest(Message):
    """A request signed with the coordinator's key for one site and one call (`fedflow.envelope`)."""

    reply_type: ClassVar[type[Message]] = SignedReply
    kind: Literal["signed"] = "signed"
    site: str = Field(max_length=200)
    federation_id: str = Field(max_length=200)
    round: int = Field(default=0, ge=0, description="The body's round (0: prepare and audit).")
    operation: str = Field(max_length=64, description="The body's kind.")
    call_id: str = Field(pattern=_CALL_ID, description="Fresh and random for every call.")
    body: str = Field(description="The request's JSON, exactly as signed.")
    key_id: str = Field(
        default="", max_length=64, description="The signing key's fingerprint: for error messages only."
    )
    signature: bytes = Field(max_length=64)


SiteRequest = Annotated[
    PrepareRequest
    | TrainRequest
    | EvaluateRequest
    | AuditRequest
    | AdvertiseRequest
    | ShareRequest
    | UnmaskRequest
    | SignedRequest,
    Field(discriminator="kind"),
]
SiteReply = (
    PrepareReply
    | TrainReply
    | EvaluateReply
    | AuditReply
    | AdvertiseReply
    | ShareReply
    | UnmaskReply
    | SignedReply
)
REQUESTS: TypeAdapter[SiteRequest] = TypeAdapter(SiteRequest)


def request_from_json(data: bytes) -> SiteRequest:
    """A request read from JSON, validated against the message types (unknown kinds refused)."""
    return REQUESTS.validate_json(data)


def reply_from_json(request: Message, data: bytes) -> Message:
    """The reply to `request`, read from JSON and validated against the type it must have.

    A site's refusal (`RefusalReply`) is raised as a PolicyRefusal naming its category.
    """
    from fedflow.site_policy import PolicyRefusal

    try:
        refusal = RefusalReply.model_validate_json(data)
    except ValueError:
        reply_type: type[Message] = request.reply_type  # type: ignore[attr-defined]
        return reply_type.model_validate_json(data)
    raise PolicyRefusal(refusal.category)
