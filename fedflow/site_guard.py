"""A site's policy, enforced: every request a site agent answers passes through its guard first.

The guard owns the site's record of each federation (`fedflow.site_ledger`), so the rules hold
across calls and restarts: the call budget, the approved models, strictly increasing rounds,
the privacy the rows have spent, and the site's own hold-out split.
"""

import os
import secrets
import threading
from pathlib import Path

from fedflow.messages import Message, TrainRequest
from fedflow.site_ledger import PrivacySpent, SiteLedger, load_ledger, request_digest, save_ledger
from fedflow.site_policy import (
    PolicyRefusal,
    SitePolicy,
    admit,
    check_holdout,
    check_round,
    check_training_size,
    privacy_step,
)

SPLIT_SEED_FILE = "split-seed"


class SiteGuard:
    """Checks requests against a site's policy and keeps the site's record of each federation."""

    def __init__(self, *, site: str, policy: SitePolicy, state_dir: Path, model_sha256: str | None) -> None:
        self.site = site
        self.policy = policy
        self.state_dir = state_dir
        self.approved = set(policy.approved_models) | ({model_sha256} if model_sha256 else set())
        self._lock = threading.Lock()

    def split(self, holdout_fraction: float, seed: int) -> tuple[float, int]:
        """The hold-out fraction and seed the site splits with: its own, unless it follows the federation."""
        if not self.policy.own_split:
            return holdout_fraction, seed
        return self.policy.holdout_fraction, self._own_seed()

    def _own_seed(self) -> int:
        """The site's split seed: from its policy, or drawn once and kept (the same split for every
        federation, so that no two federations can be asked to reveal two different splits)."""
        if self.policy.split_seed is not None:
            return self.policy.split_seed
        path = self.state_dir / SPLIT_SEED_FILE
        with self._lock:
            if not path.is_file():
                self.state_dir.mkdir(parents=True, exist_ok=True)
                temporary = path.with_name(path.name + ".tmp")
                temporary.write_text(str(secrets.randbits(62)))
                os.replace(temporary, path)
            return int(path.read_text())

    def admit(self, request: Message) -> None:
        """The rules every request meets: the federation's call budget and an approved model."""
        federation = str(getattr(request, "federation_id", ""))  # every request of the protocol has one
        with self._lock:
            ledger = load_ledger(self.state_dir, federation, self.site)
            calls = ledger.calls
            ledger.calls += 1  # a refused request spends the budget too: probing is not free
            save_ledger(self.state_dir, federation, self.site, ledger)
        model = getattr(request, "model_sha256", None)
        admit(self.policy, calls=calls, model=model, approved=self.approved)

    def before_training(self, request: TrainRequest, rows: int) -> PrivacySpent | None:
        """Refuse training the policy does not allow; the privacy it will spend (None: none counted)."""
        check_training_size(self.policy, batch_size=request.local.batch_size, rows=rows)
        ledger = load_ledger(self.state_dir, request.federation_id, self.site)
        digest = request_digest(request)
        if self.policy.increasing_rounds:
            check_round(request.round, digest, last_round=ledger.last_round, last_digest=ledger.last_train)
        floor = self.policy.privacy
        if floor is None or (request.round == ledger.last_round and digest == ledger.last_train):
            return None  # no floor, or the very same round again: the same noise, no new privacy spent
        spent = privacy_step(floor, request, rows)
        if ledger.epsilon(floor.delta, spent) > floor.max_epsilon:
            raise PolicyRefusal("site policy: the site's privacy budget for this federation is spent")
        return spent

    def after_training(self, request: TrainRequest, spent: PrivacySpent | None) -> None:
        """Record the round trained and the privacy spent."""
        with self._lock:
            ledger: SiteLedger = load_ledger(self.state_dir, request.federation_id, self.site)
            ledger.last_round = request.round
            ledger.last_train = request_digest(request)
            if spent is not None:
                ledger.privacy.append(spent)
            save_ledger(self.state_dir, request.federation_id, self.site, ledger)

    def check_holdout(self, rows: int) -> None:
        """No evaluation or audit on a hold-out small enough to single out a row."""
        check_holdout(self.policy, rows)
