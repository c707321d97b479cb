"""The steps that turn the delta into what travels: compress or mask, then encode."""

import dataclasses

from fedflow.compression import Codec
from fedflow.params import encode
from fedflow.secure_aggregation.masking import SecureRoundPlan, masked_payload
from fedflow.secure_aggregation.protocol import SiteSecrets
from fedflow.seeding import derive_seed
from fedflow.site_state import UPLINK_RESIDUAL
from fedflow.strategies.base import join_payload
from fedflow.update_path.base import SiteWork, UpdatePathError


class Compress:
    """A codec's wire arrays instead of the dense delta; its residual (error feedback) stays here."""

    name = "compress"
    provides = frozenset({"compressed"})
    needs = frozenset({"delta"})
    cannot_follow = frozenset({"compressed", "payload"})

    def __init__(self, *, codec: Codec) -> None:
        self.codec = codec

    def apply(self, work: SiteWork) -> SiteWork:
        """Compress delta + residual; keep what was not sent."""
        previous = work.state.get(UPLINK_RESIDUAL)
        wire, residual = self.codec.compress(
            work.delta,
            residual={} if previous is None else {"residual": previous},
            seed=derive_seed(work.seed, "codec", work.round, work.site),
        )
        new_state = dict(work.new_state)
        if "residual" in residual:
            new_state[UPLINK_RESIDUAL] = residual["residual"]
        return dataclasses.replace(work, wire=wire, new_state=new_state)


class Mask:
    """Secure aggregation: the (weighted) delta in fixed point plus masks that cancel in the sum."""

    name = "mask"
    provides = frozenset({"payload", "masked"})
    needs = frozenset({"delta"})
    # Masks are added to dense fixed-point vectors: a sparse or quantised payload cannot be masked.
    cannot_follow = frozenset({"compressed", "payload"})

    def __init__(self, *, secrets: SiteSecrets, plan: SecureRoundPlan) -> None:
        self.secrets = secrets
        self.plan = plan

    def apply(self, work: SiteWork) -> SiteWork:
        """The masked payload."""
        if work.extras:
            raise UpdatePathError(
                f"site {work.site!r}: extra tensors {sorted(work.extras)} cannot travel masked "
                "(secure aggregation sums only the delta)"
            )
        payload = masked_payload(
            work.delta, site=work.site, num_examples=work.num_examples, secrets=self.secrets, plan=self.plan
        )
        return dataclasses.replace(work, payload=payload)


class Encode:
    """The delta (or the codec's arrays) and the strategy's extras as one safetensors payload."""

    name = "encode"
    provides = frozenset({"payload"})
    needs = frozenset({"delta"})
    cannot_follow = frozenset({"payload"})

    def apply(self, work: SiteWork) -> SiteWork:
        """Encode."""
        sent = work.wire if work.wire is not None else work.delta
        return dataclasses.replace(work, payload=encode(join_payload(sent, work.extras)))
