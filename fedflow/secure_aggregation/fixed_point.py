"""Fixed-point encoding into Z_(2^64), so that masks cancel exactly in the sum.

A value x becomes round(x * 2^fraction_bits) in two's complement; uint64 arithmetic wraps
modulo 2^64, which is the group the masks live in. The sum of n encodings decodes to the sum
of the values within n * 2^-(fraction_bits + 1) per coordinate.
"""

import numpy as np

from fedflow.errors import FedflowError


class FixedPointRangeError(FedflowError):
    """A value too large to be summed without wrapping around the field."""


def encode_fixed_point(values: np.ndarray, *, fraction_bits: int, max_summands: int) -> np.ndarray:
    """Values as uint64 field elements; refuses values whose sum over `max_summands` could wrap."""
    scaled = np.rint(np.asarray(values, dtype=np.float64) * float(2**fraction_bits))
    # Each term below 2^63 / n keeps the signed sum of n terms inside int64.
    limit = float(2**63 // max(max_summands, 1))
    if not np.all(np.isfinite(scaled)) or np.any(np.abs(scaled) >= limit):
        largest = float(np.max(np.abs(values))) if np.all(np.isfinite(values)) else float("inf")
        raise FixedPointRangeError(
            f"an update value of magnitude {largest:.3g} does not fit secure aggregation's fixed-point "
            f"range for {max_summands} sites at {fraction_bits} fraction bits; clip the updates "
            "(privacy.clip_norm) or lower secure_aggregation.fraction_bits"
        )
    return scaled.astype(np.int64).view(np.uint64)


def decode_fixed_point(field_sum: np.ndarray, *, fraction_bits: int) -> np.ndarray:
    """The float64 values of a (summed) uint64 encoding."""
    return np.asarray(field_sum, dtype=np.uint64).view(np.int64).astype(np.float64) / float(2**fraction_bits)
