"""A federation between rounds: what it agreed on at the start, and where it stands now."""

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fedflow.compression import Codec
from fedflow.federation.attendance import Attendance
from fedflow.federation.plan import FederationPlan
from fedflow.params import NamedArrays
from fedflow.privacy.accountant import PrivacyAccountant
from fedflow.strategies import Strategy
from fedflow.tabular import Preprocessor
from fedflow.tasks import TaskKind


@dataclass
class RunningFederation:
    """Fixed once set up (sites, preprocessing, strategy, codec); `weights` onwards move each round."""

    plan: FederationPlan
    task: TaskKind
    eligible: list[str]
    excluded: dict[str, list[str]]
    train_rows: dict[str, int]  # what each site declared before the run: bounds its example count
    preprocessor: Preprocessor
    class_weights: list[float] | None
    reference_payload: bytes  # the round-0 model: the audit's reference
    strategy: Strategy
    codec: Codec
    accountant: PrivacyAccountant
    public_keys: dict[str, Ed25519PublicKey | None]
    champion_metric: str
    higher_is_better: bool
    weights: NamedArrays
    noise_key: bytes = field(default=b"", repr=False)  # the coordinator's secret DP noise key
    completed: int = 0  # the last completed round
    last_accepted: dict[str, int] = field(default_factory=dict)  # per site: its last kept update
    history: list[dict[str, float]] = field(default_factory=list)
    final_metrics: dict[str, float] = field(default_factory=dict)
    per_site: dict[str, dict[str, float]] = field(default_factory=dict)
    present: list[str] = field(default_factory=list)  # this round's sites not left out (sampled from)
    attendance: Attendance = field(default_factory=lambda: Attendance(max_missed_calls=3))
    holdout_rows: dict[str, int] = field(default_factory=dict)  # declared: bounds evaluation counts

    @property
    def private(self) -> bool:
        """True when client-level DP is on."""
        return self.plan.config.privacy.mode != "off"
