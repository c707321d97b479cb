"""Secure aggregation as a step of the update path: a masked payload out, a mean delta back."""

from collections.abc import Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict

from fedflow.errors import PayloadError
from fedflow.params import NamedArrays, decode, encode, flatten, unflatten
from fedflow.secure_aggregation.fixed_point import decode_fixed_point, encode_fixed_point
from fedflow.secure_aggregation.protocol import PublicKeys, RoundTerms, SiteSecrets, mask_update

MASKED = "masked"


class SecureRoundPlan(BaseModel):
    """A round's public secure-aggregation settings, sent to every site with the training request."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    roster: dict[str, PublicKeys]  # the sites that advertised keys (phase 1)
    members: tuple[str, ...]  # those that also shared their secrets (phase 2): they mask
    threshold: int
    context: bytes
    fraction_bits: int
    weighted_by_examples: bool

    def terms(self) -> RoundTerms:
        """What a site masks and unmasks under: roster, members, threshold, round."""
        return RoundTerms(
            roster=self.roster, members=self.members, threshold=self.threshold, context=self.context
        )


def round_context(federation_id: str, round_number: int) -> bytes:
    """Binds keys, shares and masks to one round of one federation (no replay across rounds)."""
    return f"{federation_id}|round={round_number}".encode()


def update_length(like: Mapping[str, np.ndarray]) -> int:
    """Values in a flattened update of this model."""
    return sum(int(np.asarray(v).size) for v in like.values())


def masked_payload(
    delta: NamedArrays, *, site: str, num_examples: int, secrets: SiteSecrets, plan: SecureRoundPlan
) -> bytes:
    """The site's weighted delta in fixed point, masked, as a one-tensor safetensors payload."""
    weight = float(num_examples) if plan.weighted_by_examples else 1.0
    encoded = encode_fixed_point(
        flatten(delta) * weight, fraction_bits=plan.fraction_bits, max_summands=len(plan.members)
    )
    masked = mask_update(
        encoded,
        secrets,
        site=site,
        roster=plan.roster,
        context=plan.context,
        members=plan.members,
        threshold=plan.threshold,
    )
    return encode({MASKED: masked})


def read_masked(payload: bytes, *, length: int, max_payload_bytes: int) -> np.ndarray:
    """A masked update's field vector, after checking its size, name, dtype and length."""
    if len(payload) > max_payload_bytes:
        raise PayloadError(f"masked update of {len(payload)} bytes exceeds the limit of {max_payload_bytes}")
    arrays = decode(payload)
    vector = arrays.get(MASKED)
    if set(arrays) != {MASKED} or vector is None or vector.dtype != np.uint64 or vector.shape != (length,):
        raise PayloadError(
            f"a masked update must be one uint64 tensor {MASKED!r} of {length} values; got "
            + ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in arrays.items())
        )
    return vector


def mean_delta_from_sum(
    total: np.ndarray, *, total_weight: float, fraction_bits: int, like: Mapping[str, np.ndarray]
) -> NamedArrays:
    """The weighted mean delta from the unmasked fixed-point sum of weighted deltas."""
    return unflatten(decode_fixed_point(total, fraction_bits=fraction_bits) / total_weight, like)
