"""Replies sealed to the coordinator's one-time key: a reader of the exchange learns nothing, and a
sealed reply opens only with its call's key, for its call, unaltered."""

import json

import pytest

from fedflow.messages import EvaluateReply
from fedflow.reply_sealing import SealingError, new_reply_key, open_sealed, seal

REPLY = EvaluateReply(metrics={"roc_auc": 0.8125, "num_examples": 76.0}).model_dump_json().encode()
CALL = "cleveland/session/0123abcd"


def test_only_the_calls_key_opens_the_reply_for_that_call() -> None:
    key, public = new_reply_key()
    sealed = seal(REPLY, recipient=public, context=CALL)
    assert open_sealed(sealed, key=key, context=CALL) == REPLY
    other, _ = new_reply_key()
    with pytest.raises(SealingError, match="another key or call"):
        open_sealed(sealed, key=other, context=CALL)
    with pytest.raises(SealingError, match="another key or call"):  # moved to another call
        open_sealed(sealed, key=key, context="cleveland/session/ffff")


def test_a_reader_of_the_exchange_sees_no_metric_and_cannot_alter_one() -> None:
    key, public = new_reply_key()
    sealed = seal(REPLY, recipient=public, context=CALL)
    assert b"roc_auc" not in sealed and b"0.8125" not in sealed and b"num_examples" not in sealed
    fields = json.loads(sealed)
    ciphertext = bytearray(fields["ciphertext"].encode())
    ciphertext[10] = ord("A") if ciphertext[10] != ord("A") else ord("B")
    fields["ciphertext"] = ciphertext.decode()
    with pytest.raises(SealingError):
        open_sealed(json.dumps(fields).encode(), key=key, context=CALL)


def test_sealing_twice_gives_unrelated_ciphertexts() -> None:
    _, public = new_reply_key()
    first, second = (json.loads(seal(REPLY, recipient=public, context=CALL)) for _ in range(2))
    assert first["ephemeral_key"] != second["ephemeral_key"] and first["ciphertext"] != second["ciphertext"]


@pytest.mark.parametrize("data", [b"{}", b"not json", b'{"version": 1}'])
def test_what_is_not_a_sealed_reply_is_refused(data: bytes) -> None:
    key, _ = new_reply_key()
    with pytest.raises(SealingError, match="not a sealed reply"):
        open_sealed(data, key=key, context=CALL)


def test_a_bad_reply_key_is_refused() -> None:
    with pytest.raises(SealingError, match="X25519"):
        seal(REPLY, recipient=b"\x00" * 31, context=CALL)
