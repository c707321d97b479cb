"""What a site allows for its own rows, whatever the coordinator (or anyone reaching it) asks.

A site reads its policy from its own file (`fedflow site serve --policy site-policy.yaml`) and
checks every request against it: its own hold-out split (seed and fraction chosen by the site,
never by a request), minimum batch and update sizes, a minimum hold-out for evaluation, a budget
of calls per federation, strictly increasing rounds, the models it approved, and — when it asks
for one — a privacy floor with its own accountant, which refuses to train past the ε it allows.
A refusal says which rule refused, never anything about the rows.
"""

import hashlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from fedflow.errors import FedflowError

if TYPE_CHECKING:
    from fedflow.messages import TrainRequest
    from fedflow.site_ledger import PrivacySpent


class PolicyRefusal(FedflowError):
    """The site's policy refuses the request; the message is the rule's category, never data."""


class PrivacyFloor(BaseModel):
    """The least privacy the site gives its rows: noise the site adds itself, and a total ε."""

    model_config = ConfigDict(extra="forbid")

    mechanism: Literal["distributed", "dp_sgd", "either"] = Field(
        default="either",
        description="distributed: client-level DP with the site's share of the noise; dp_sgd: "
        "example-level DP-SGD at the site; either: one of them. Central DP is noise the coordinator "
        "adds: it does not count.",
    )
    max_clip_norm: float = Field(
        default=1.0, gt=0, description="Largest clip norm (C, or DP-SGD's max_grad_norm)."
    )
    min_noise_multiplier: float = Field(
        default=1.0,
        gt=0,
        description="Smallest noise the site itself adds, as a multiple of the clip norm "
        "(distributed: sigma / sqrt(sites in the round); DP-SGD: its noise multiplier).",
    )
    max_epsilon: float = Field(default=10.0, gt=0, description="The site's ε budget per federation.")
    delta: float = Field(default=1e-5, gt=0, lt=1, description="The δ of the site's (ε, δ).")


class SitePolicy(BaseModel):
    """A site's rules; the defaults are the safe ones a served site gets without a policy file."""

    model_config = ConfigDict(extra="forbid")

    own_split: bool = Field(
        default=True,
        description="Split rows into training and hold-out with the site's own fraction and seed "
        "(False: as the federation proposes; simulation only).",
    )
    holdout_fraction: float = Field(default=0.25, ge=0, lt=1, description="The site's own hold-out share.")
    split_seed: int | None = Field(
        default=None, ge=0, description="None: drawn once at random and kept in the site's state folder."
    )
    min_batch_size: int = Field(default=8, ge=1, description="Refuse local training with smaller batches.")
    min_examples_per_update: int = Field(
        default=20, ge=1, description="Refuse to train (send an update) on fewer training rows."
    )
    min_holdout_rows: int = Field(default=10, ge=1, description="Refuse evaluation and audit on fewer rows.")
    max_calls_per_federation: int = Field(default=2000, ge=1, description="Requests answered per federation.")
    increasing_rounds: bool = Field(
        default=True,
        description="Train each round once, in increasing order (the last round again only as the very "
        "same request: a coordinator's retry after a crash). False: simulation only.",
    )
    approved_models: list[str] = Field(
        default_factory=list,
        description="SHA-256 of the model.py files the site agreed to train; empty: only its own domain's.",
    )
    privacy: PrivacyFloor | None = Field(
        default=None, description="None: the site asks for no DP of its own."
    )
    require_authentication: bool = Field(
        default=False,
        description="Answer only requests signed by the coordinator (`coordinator.pub` in the site's key "
        "folder), and refuse to start without the site's own signing key: set it when the federation "
        "requires authentication. A signed request is checked either way.",
    )

    @classmethod
    def simulation(cls) -> "SitePolicy":
        """Simulated sites of one organisation: the federation's split, no floors beyond one row."""
        return cls(
            own_split=False,
            min_batch_size=1,
            min_examples_per_update=1,
            min_holdout_rows=1,
            max_calls_per_federation=10**9,
            increasing_rounds=False,
        )


def model_sha256(model_code: Path) -> str:
    """The SHA-256 of a domain's model.py, as sites approve it."""
    return hashlib.sha256(model_code.read_bytes()).hexdigest()


def admit(policy: SitePolicy, *, calls: int, model: str | None, approved: set[str]) -> None:
    """Rules for every request: the call budget, and a model the site agreed to."""
    if calls >= policy.max_calls_per_federation:
        raise PolicyRefusal("site policy: call budget of this federation spent")
    if model is not None and approved and model not in approved:
        raise PolicyRefusal("site policy: model not approved by this site")


def check_round(round_number: int, digest: str, *, last_round: int, last_digest: str) -> None:
    """Strictly increasing rounds; the last round again only as the very same request (a retry)."""
    if round_number < last_round or (round_number == last_round and digest != last_digest):
        raise PolicyRefusal("site policy: rounds must increase (a round is trained once)")


def check_training_size(policy: SitePolicy, *, batch_size: int, rows: int) -> None:
    """No tiny batches and no updates from a handful of rows: they are close to raw gradients."""
    if batch_size < policy.min_batch_size:
        raise PolicyRefusal("site policy: batch size below the site's minimum")
    if rows < policy.min_examples_per_update:
        raise PolicyRefusal("site policy: too few training rows for an update")


def check_holdout(policy: SitePolicy, rows: int) -> None:
    """No evaluation (or audit) on a hold-out small enough to single out a row."""
    if rows < policy.min_holdout_rows:
        raise PolicyRefusal("site policy: hold-out below the site's minimum")


def privacy_step(floor: PrivacyFloor, request: "TrainRequest", rows: int) -> "PrivacySpent":
    """The privacy this training spends, if it meets the site's floor (else a refusal).

    Distributed DP counts only the site's own share of the noise, sigma / sqrt(sites in the
    round) of its clip norm: a coordinator that overstates the round's size makes the site add
    less noise, so the floor is checked on what the site itself adds. DP-SGD counts its Poisson
    steps: one epoch is ceil(rows / batch) steps at sampling rate 1 / ceil(rows / batch).
    """
    from fedflow.site_ledger import PrivacySpent

    privacy, dp_sgd = request.privacy, request.local.dp_sgd
    if floor.mechanism in ("distributed", "either") and privacy.mode == "distributed":
        own = privacy.noise_multiplier / math.sqrt(request.sites_in_round)
        if privacy.clip_norm <= floor.max_clip_norm and own >= floor.min_noise_multiplier:
            return PrivacySpent(noise_multiplier=own, sample_rate=1.0)
    strong = dp_sgd is not None and (
        dp_sgd.max_grad_norm <= floor.max_clip_norm and dp_sgd.noise_multiplier >= floor.min_noise_multiplier
    )
    if floor.mechanism in ("dp_sgd", "either") and dp_sgd is not None and strong:
        batches = math.ceil(rows / request.local.batch_size)
        return PrivacySpent(
            noise_multiplier=dp_sgd.noise_multiplier,
            sample_rate=1.0 / batches,
            steps=request.local.epochs * batches,
        )
    raise PolicyRefusal("site policy: the request's differential privacy is below the site's floor")
