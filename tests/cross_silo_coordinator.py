"""The coordinator process of the cross-silo integration test (run as a script by the test).

    cross_silo_coordinator.py SCENARIO OUT EXCHANGE KEYS

`bad-key`: records every file it opens (Python audit hook) while a 2-round cross-silo federation
with authentication runs over the four served sites, then runs the same federation in simulation
over the three honest sites, and writes both final models' weights and the opened paths to OUT.
`killed`: a 4-round cross-silo federation over the three honest sites, during which the test
kills one site; writes who took part and who was left out.
"""

import json
import sys
from pathlib import Path

import numpy as np

OPENED: list[str] = []
RECORDING = False


def _record(event: str, args: tuple) -> None:  # type: ignore[type-arg]
    if RECORDING and event == "open" and args and isinstance(args[0], str | bytes | Path):
        OPENED.append(str(args[0]))


sys.addaudithook(_record)

import mlflow  # noqa: E402

import flows  # noqa: E402, F401
from fedflow.checkpoint import load_checkpoint  # noqa: E402
from fedflow.config import FederationConfig  # noqa: E402
from flows.coordinator import SiteSelection, federated_training  # noqa: E402
from flows.transport import TransportConfig  # noqa: E402

HONEST = ["cleveland", "hungary", "switzerland"]


def _transport(exchange: str) -> TransportConfig:
    return TransportConfig(
        mode="cross-silo",
        exchange_url=exchange,
        round_timeout_s=300,
        liveness_timeout_s=5,
        keep_messages=True,  # the test reads them to check that no site path reached them
    )


def _participants(name: str) -> list[float]:
    return [h["sites/participants"] for h in load_checkpoint(name)[0].history]


def bad_key(out: Path, exchange: str, keys: str) -> None:
    """Four sites, one with an unregistered key; then the same federation simulated on the others."""
    global RECORDING
    auth = {"required": True, "keys_dir": keys}
    config = FederationConfig.model_validate({"rounds": 2, "seed": 5, "audit": False, "authentication": auth})
    RECORDING = True
    remote = federated_training(
        domain="healthcare",
        federation=config,
        run_name="cross-silo",
        sites=SiteSelection(names=[*HONEST, "va_long_beach"]),
        transport=_transport(exchange),
    )
    RECORDING = False
    plain = FederationConfig(rounds=2, seed=5, audit=False)
    local = federated_training(
        domain="healthcare", federation=plain, run_name="simulation", sites=SiteSelection(names=HONEST)
    )
    arrays = {}
    for name in ("cross-silo", "simulation"):
        arrays.update({f"{name}/{k}": v for k, v in load_checkpoint(name)[1].items()})
    np.savez(out / "weights.npz", **arrays)
    result = {
        "opened": OPENED,
        "rounds": remote.rounds_completed,
        "excluded": remote.excluded_sites,
        "participants": _participants("cross-silo"),
        "simulation_rounds": local.rounds_completed,
    }
    (out / "result.json").write_text(json.dumps(result))


def killed(out: Path, exchange: str, keys: str, victim: int) -> None:
    """Three honest sites for four rounds; the site process group `victim` is killed once round 1
    is complete (before round 2 starts: the progress listeners hear each round at once)."""
    import os
    import signal

    from flows.progress import RoundEvent, subscribe

    def kill_after_round_one(event: RoundEvent) -> None:
        if event.round == 1:
            os.killpg(victim, signal.SIGKILL)

    subscribe(kill_after_round_one)
    auth = {"required": True, "keys_dir": keys}
    config = FederationConfig.model_validate(
        {"rounds": 4, "seed": 5, "audit": False, "authentication": auth, "max_missed_calls": 2}
    )
    remote = federated_training(
        domain="healthcare",
        federation=config,
        run_name="killed",
        sites=SiteSelection(names=HONEST),
        transport=_transport(exchange),
    )
    tags = mlflow.get_run(remote.mlflow_run_id).data.tags
    attendance = {k.rsplit(".", 1)[1]: v for k, v in tags.items() if k.startswith("fedflow.attendance.")}
    result = {
        "rounds": remote.rounds_completed,
        "participants": _participants("killed"),
        "attendance": attendance,
    }
    (out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    scenario, folder, exchange_url, keys_dir = sys.argv[1:5]
    if scenario == "killed":
        killed(Path(folder), exchange_url, keys_dir, int(sys.argv[5]))
    else:
        bad_key(Path(folder), exchange_url, keys_dir)
