"""The coordinator's side of a site's session: one warm run of the site's deployment per federation.

`SiteSession.start` claims one of the site's standby sessions (already warm: `flows.site_flow`)
or, when there is none, asks the Prefect API for a run of the site's served deployment (a
subflow of the federation's run) and returns at once; the site's process then beats in
`{exchange}/{site}/{session}/alive.json`. `problem()` says why
the site cannot answer now — no deployment, its run ended, no heartbeat for
`liveness_timeout_s`, not started within `start_timeout_s` — judged on the coordinator's own
clock (the heartbeat is a counter, never a timestamp another machine wrote).
"""

import contextlib
import time
import uuid

from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.states import Cancelled

from flows.exchange import Claim, Exchange
from flows.site_flow import SITE_FLOW_NAME, site_deployment_name
from flows.transport import TransportConfig

STATE_CHECK_S = 2.0  # how often to ask the Prefect API whether a session's run ended
CLAIM_WAIT_S = 3.0  # a live standby session answers a claim within its poll interval


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


class SiteSession:
    """One site's session in this federation: started once, watched by its heartbeat."""

    def __init__(
        self,
        *,
        domain: str,
        site: str,
        exchange: Exchange,
        transport: TransportConfig,
        rejoining: bool = False,
        federation: str = "",
    ) -> None:
        self.domain = domain
        self.exchange = exchange
        self.federation = federation  # names the site's session run in the Prefect UI
        self.rejoining = rejoining  # a fresh session after the site stopped: no grace to start
        self.site = site
        self.transport = transport
        self.session_id = uuid.uuid4().hex
        self.mailbox = exchange.mailbox(site, self.session_id)
        self.exchange_url = exchange.url
        self.run_id: object | None = None
        self.start_error: str | None = None
        self.started_at = time.monotonic()
        self.last_beat: int | None = None
        self.beat_seen_at: float | None = None
        self._state_checked_at = 0.0
        self._ended: str | None = None

    @property
    def deployment(self) -> str:
        """The site's deployment, `fedflow-site/<domain>-<site>`."""
        return f"{SITE_FLOW_NAME}/{site_deployment_name(self.domain, self.site)}"

    def start(self) -> "SiteSession":
        """Ask for the session's run (returns at once; the site's process starts it)."""
        self.started_at = time.monotonic()
        if self._claim_standby():
            return self
        unserved = self._unserved()
        if unserved is not None:
            self.start_error = unserved
            return self
        try:
            run = run_deployment(
                self.deployment,
                parameters={"session": self.session_id, "exchange_url": self.exchange_url},
                timeout=0,
                as_subflow=True,
            )
        except Exception as error:  # ObjectNotFound and the API's own errors: the request never left
            self.start_error = (
                f"no request reached it: the Prefect API has no deployment {self.deployment} it can run "
                f"({type(error).__name__}); start `fedflow site serve --domain {self.domain} "
                f"--site {self.site} ...` at the site, on this Prefect API"
            )
            return self
        self.run_id = run.id
        return self

    def _claim_standby(self) -> bool:
        """Take one of the site's warm standby sessions, if one answers the claim in CLAIM_WAIT_S."""
        for name in self.exchange.standby_sessions(self.site):
            mailbox = self.exchange.mailbox(self.site, name)
            nonce = uuid.uuid4().hex
            mailbox.claim(Claim(nonce=nonce, federation=self.federation[:200]))
            deadline = time.monotonic() + CLAIM_WAIT_S
            while time.monotonic() < deadline:
                accepted = mailbox.accepted()
                if accepted is not None:
                    if accepted.nonce != nonce:  # another coordinator's claim came first
                        break
                    self.session_id, self.mailbox = name, mailbox
                    self.run_id = _uuid(accepted.flow_run_id)
                    self.beat_seen_at = time.monotonic()  # the answer is a sign of life
                    return True
                time.sleep(self.transport.poll_interval_s)
        return False

    def _unserved(self) -> str | None:
        """Why no process serves the site's deployment now (a stopped runner pauses it; Prefect marks
        it NOT_READY when no runner polled it for a minute), or None (served, or not known yet)."""
        try:
            with get_client(sync_client=True) as client:
                deployment = client.read_deployment_by_name(self.deployment)
        except Exception:  # not deployed, or the API failed: run_deployment says which
            return None
        # A stopped `fedflow site serve` pauses its deployment; one killed shows NOT_READY within a minute.
        if deployment.paused or (deployment.status is not None and deployment.status.value == "NOT_READY"):
            return (
                f"no request reached it: nobody serves {self.deployment} now (it was served once; start "
                f"`fedflow site serve --domain {self.domain} --site {self.site} ...` at the site again)"
            )
        return None

    def age(self) -> float:
        """Seconds since the session was asked for."""
        return time.monotonic() - self.started_at

    def alive(self) -> bool:
        """True once the site's process has beaten at least once and has not stopped since."""
        return self.beat_seen_at is not None and self.problem() is None

    def problem(self, *, waiting: bool = True) -> str | None:
        """Why the site cannot answer now, or None (alive, or still starting within its time)."""
        if self.start_error is not None:
            return self.start_error
        now = time.monotonic()
        self._look_for_a_beat(now)
        ended = self._run_ended(now)
        if ended is not None:
            return ended
        if self.beat_seen_at is None:
            if self.rejoining and not waiting:
                return "it stopped answering earlier and has not come back yet"
            if now - self.started_at > self.transport.start_timeout_s:
                return (
                    f"its session did not start within {self.transport.start_timeout_s:g} s: is "
                    f"`fedflow site serve` running for {self.deployment}?"
                )
            return None
        silent = now - self.beat_seen_at
        if silent > self.transport.liveness_timeout_s:
            return f"no heartbeat for {silent:.0f} s (its process stopped or lost the exchange)"
        return None

    def _look_for_a_beat(self, now: float) -> None:
        heartbeat = self.mailbox.heartbeat()
        if heartbeat is not None and heartbeat.beat != self.last_beat:
            self.last_beat, self.beat_seen_at = heartbeat.beat, now

    def _run_ended(self, now: float) -> str | None:
        """Why the session's run is over, asked of the Prefect API at most every STATE_CHECK_S."""
        if self._ended is not None or self.run_id is None or now - self._state_checked_at < STATE_CHECK_S:
            return self._ended
        self._state_checked_at = now
        try:
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(self.run_id).state  # type: ignore[arg-type]
        except Exception:  # the API is briefly unreachable: the heartbeat decides meanwhile
            return None
        if state is not None and state.is_final():
            self._ended = f"its session run ended {state.name} (see the site's own log)"
        return self._ended

    def close(self, reason: str) -> None:
        """End the session: a live site finishes its run; a run that never started is cancelled."""
        if self.start_error is not None:
            return
        with contextlib.suppress(OSError):
            self.mailbox.close(reason)
        if self.run_id is None or self.beat_seen_at is not None or self._ended is not None:
            return
        try:
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(
                    self.run_id,  # type: ignore[arg-type]
                    Cancelled(message=f"fedflow: the federation ended ({reason})"),
                    force=True,
                )
        except Exception:  # best effort: the run is only a record by now
            pass
