"""The coordinator process of the cross-silo integration test (run as a script by the test).

It records every file it opens (Python audit hook) while the cross-silo federation runs, then
runs the same federation in simulation mode, and writes both final models' weights and the
opened paths to the output folder given as the first argument.
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

import flows  # noqa: E402, F401
from fedflow.checkpoint import load_checkpoint  # noqa: E402
from fedflow.config import FederationConfig  # noqa: E402
from flows.coordinator import SiteSelection, federated_training  # noqa: E402
from flows.transport import TransportConfig  # noqa: E402


def main() -> None:
    out, exchange = Path(sys.argv[1]), sys.argv[2]
    served = ["cleveland", "hungary", "switzerland"]
    config = FederationConfig(rounds=2, seed=5, audit=False)
    global RECORDING
    RECORDING = True
    remote = federated_training(
        domain="healthcare",
        federation=config,
        run_name="cross-silo",
        # va_long_beach has no deployment: it must be excluded, and the run go on.
        sites=SiteSelection(names=[*served, "va_long_beach"]),
        transport=TransportConfig(
            mode="cross-silo",
            exchange_url=exchange,
            round_timeout_s=240,
            poll_interval_s=0.5,
            keep_messages=True,  # the test reads them to check that no site path reached them
        ),
    )
    RECORDING = False
    local = federated_training(
        domain="healthcare", federation=config, run_name="simulation", sites=SiteSelection(names=served)
    )
    arrays = {}
    for name in ("cross-silo", "simulation"):
        arrays.update({f"{name}/{k}": v for k, v in load_checkpoint(name)[1].items()})
    np.savez(out / "weights.npz", **arrays)
    (out / "result.json").write_text(
        json.dumps(
            {
                "opened": OPENED,
                "rounds": remote.rounds_completed,
                "excluded": remote.excluded_sites,
                "participants": [h["sites/participants"] for h in load_checkpoint("cross-silo")[0].history],
                "simulation_rounds": local.rounds_completed,
            }
        )
    )


if __name__ == "__main__":
    main()
