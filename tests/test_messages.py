"""The typed messages of the round protocol: the same objects in simulation and cross-silo."""

import json

import numpy as np
import pytest
from pydantic import ValidationError

from fedflow.config import LocalTrainConfig, StrategyConfig
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
    SignedReply,
    SignedRequest,
    SiteRows,
    TrainReply,
    TrainRequest,
    UnmaskReply,
    UnmaskRequest,
    reply_from_json,
    request_from_json,
)
from fedflow.params import encode
from fedflow.secure_aggregation.masking import SecureRoundPlan, round_context
from fedflow.secure_aggregation.protocol import SiteSecrets
from fedflow.tabular import Preprocessor, SiteStatistics
from fedflow.validation_summary import ValidationSummary

PAYLOAD = encode({"w": np.arange(4, dtype=np.float32)})
ROWS = SiteRows(holdout_fraction=0.25, seed=3, preprocessor=Preprocessor(numeric=[], categorical=[]))
KEYS = SiteSecrets.generate().public()
CONTEXT = round_context("fed", 2)
PLAN = SecureRoundPlan(
    roster={"a": KEYS},
    members=("a",),
    threshold=1,
    context=CONTEXT,
    fraction_bits=24,
    weighted_by_examples=True,
)
EXCHANGES: list[tuple[Message, Message]] = [
    (
        PrepareRequest(federation_id="fed", holdout_fraction=0.25, seed=3),
        PrepareReply(
            summary=ValidationSummary(site="a", success=True, rows=9), statistics=SiteStatistics(rows=7)
        ),
    ),
    (
        TrainRequest(
            federation_id="fed",
            round=2,
            rows=ROWS,
            global_payload=PAYLOAD,
            local=LocalTrainConfig(),
            strategy=StrategyConfig(name="fedprox", options={"mu": 0.1}),
            secure=PLAN,
        ),
        TrainReply(num_examples=7, payload=PAYLOAD, metrics={"train_loss": 0.5}),
    ),
    (
        EvaluateRequest(
            federation_id="fed", round=2, rows=ROWS, global_payload=PAYLOAD, local=LocalTrainConfig()
        ),
        EvaluateReply(metrics={"roc_auc": 0.7}),
    ),
    (
        AuditRequest(
            federation_id="fed", rows=ROWS, final_payload=PAYLOAD, reference_payload=PAYLOAD, shadow_models=2
        ),
        AuditReply(scores={"mia_loss_auc": 0.5}),
    ),
    (AdvertiseRequest(federation_id="fed", round=2), AdvertiseReply(public_keys=KEYS)),
    (
        ShareRequest(federation_id="fed", round=2, roster={"a": KEYS}, threshold=1, context=CONTEXT),
        ShareReply(ciphertexts={"a": b"\x01\x02"}),
    ),
    (
        UnmaskRequest(federation_id="fed", round=2, ciphertexts={"a": b"\x03"}, plan=PLAN, survivors=["a"]),
        UnmaskReply(shares={"a": b"\x04"}),
    ),
    (  # what travels when the federation requires authentication (fedflow/envelope.py)
        SignedRequest(
            site="a",
            federation_id="fed",
            round=2,
            operation="secagg-advertise",
            call_id="0" * 32,
            body=AdvertiseRequest(federation_id="fed", round=2).model_dump_json(),
            signature=b"\x05" * 64,
        ),
        SignedReply(
            site="a",
            federation_id="fed",
            round=2,
            call_id="0" * 32,
            request_sha256="1" * 64,
            body=AdvertiseReply(public_keys=KEYS).model_dump_json(),
            signature=b"\x06" * 64,
        ),
    ),
]


@pytest.mark.parametrize(("request_", "reply"), EXCHANGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_through_json(request_: Message, reply: Message) -> None:
    data = request_.model_dump_json().encode()
    assert request_from_json(data) == request_
    assert reply_from_json(request_, reply.model_dump_json().encode()) == reply
    assert json.loads(data)["version"] == 1


@pytest.mark.parametrize(("request_", "reply"), EXCHANGES, ids=lambda m: type(m).__name__)
def test_a_reply_of_the_wrong_type_is_refused(request_: Message, reply: Message) -> None:
    others = [r for _, r in EXCHANGES if type(r) is not type(reply)]
    for other in others:
        with pytest.raises(ValidationError):
            reply_from_json(request_, other.model_dump_json().encode())


def test_unknown_kinds_versions_and_fields_are_refused() -> None:
    request = json.loads(AdvertiseRequest(federation_id="fed", round=1).model_dump_json())
    for change in ({"kind": "run-this"}, {"version": 2}, {"command": "rm -rf /"}):
        with pytest.raises(ValidationError):
            request_from_json(json.dumps({**request, **change}).encode())


def test_bytes_travel_as_base64_and_messages_are_frozen() -> None:
    reply = TrainReply(num_examples=1, payload=b"\x00\x01binary")
    text = reply.model_dump_json()
    assert "binary" not in text  # base64, not raw bytes
    with pytest.raises(ValidationError):
        reply.num_examples = 2  # type: ignore[misc]
