"""Fixed-seed federations whose final global weights pin fedflow's behaviour across refactors.

`tests/behaviour_digests.json` holds the SHA-256 of each run's final global weights, recorded
before the round protocol moved into the engine (main at 3a5af3b); `test_behaviour_digests.py`
runs them again and compares. Float results depend on the CPU (MKL and oneDNN pick kernels by
vendor and instruction set), so the digests are kept per machine kind (`machine_kind()`); a
machine of a kind not recorded still checks the flow against the engine on the spot. The DP
runs ask for `privacy.reproducible_noise` (noise from the seed, as at 3a5af3b): secret noise,
the default, differs on every run by design. Record anew only for a change meant to alter results:

    .venv/bin/python tests/behaviour_runs.py --record     # for this machine's kind

A new machine kind is recorded from a commit whose behaviour is known (a worktree of it).
"""

import hashlib
import json
import platform
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
DIGESTS = HERE / "behaviour_digests.json"
MANY_CLIENTS = "telecom_100"
TINY_LANGUAGE = "tiny_language"


def machine_kind() -> str:
    """CPU vendor and model, architecture and torch version: what decides a float's last bits here."""
    import torch

    fields: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    cpu = " ".join(filter(None, (fields.get("vendor_id"), fields.get("model name")))) or platform.processor()
    return f"{cpu} | {platform.machine()} | torch {torch.__version__}"


def recorded_digests() -> dict[str, dict[str, dict[str, str]]]:
    """Machine kind -> run -> its digests."""
    return json.loads(DIGESTS.read_text())


def weights_sha256(weights: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        array = np.ascontiguousarray(weights[name])
        digest.update(f"{name}|{array.dtype.str}|{list(array.shape)}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def write_many_clients_domain(root: Path) -> None:
    """The telecom template cut into 100 simulated operators (IID), for a many-client run."""
    import shutil

    from domains import DOMAINS_ROOT

    target = root / MANY_CLIENTS
    shutil.copytree(DOMAINS_ROOT / "telecom", target, ignore=shutil.ignore_patterns("__pycache__"))
    spec = yaml.safe_load((target / "config.yaml").read_text())
    spec["name"] = MANY_CLIENTS
    spec["partition"] = {"source": "data/telco_churn.csv", "method": "iid", "num_sites": 100, "seed": 0}
    spec["quality"] = {"min_rows": 20, "min_rows_per_class": 2}
    (target / "config.yaml").write_text(yaml.safe_dump(spec))


def write_extra_domains(root: Path) -> None:
    """The two domains the runs need besides the shipped ones: 100 clients and a tiny language model."""
    from tiny_language_model import save_tiny_llama, speeches, tiny_language_domain

    write_many_clients_domain(root)
    model = save_tiny_llama(root / "tiny-llama", speeches("hamlet") + speeches("iago"))
    tiny_language_domain(root, model, name=TINY_LANGUAGE)


def _healthcare(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {"rounds": 3, "seed": 4, "audit": False}
    base.update(changes)
    return base


# name -> (domain, federation config as a mapping over the domain's own federation defaults)
RUNS: dict[str, tuple[str, dict[str, object]]] = {
    "healthcare-fedavg": ("healthcare", _healthcare()),
    "healthcare-scaffold": ("healthcare", _healthcare(strategy={"name": "scaffold"})),
    "healthcare-fedadam": ("healthcare", _healthcare(strategy={"name": "fedadam"})),
    "healthcare-distributed-dp-secure-aggregation": (
        "healthcare",
        _healthcare(
            rounds=2,
            privacy={
                "mode": "distributed",
                "clip_norm": 1.0,
                "noise_multiplier": 0.5,
                "reproducible_noise": True,
            },
            secure_aggregation={"enabled": True},
        ),
    ),
    "healthcare-central-dp": (
        "healthcare",
        _healthcare(
            rounds=2,
            privacy={
                "mode": "central",
                "clip_norm": 1.0,
                "noise_multiplier": 0.5,
                "reproducible_noise": True,
            },
        ),
    ),
    "healthcare-topk": (
        "healthcare",
        _healthcare(compression={"codec": "topk", "options": {"fraction": 0.1}}),
    ),
    "healthcare-fedprox-personalised": (
        "healthcare",
        _healthcare(rounds=2, strategy={"name": "fedprox", "options": {"mu": 0.1}}, personalization_steps=3),
    ),
    "telecom-100-clients": (MANY_CLIENTS, {"rounds": 2, "seed": 2, "audit": False, "sites_fraction": 0.2}),
    "language-1-round": (TINY_LANGUAGE, {"rounds": 1, "seed": 0, "audit": False}),
}


def federation_config(domain: str, changes: Mapping[str, object]):  # type: ignore[no-untyped-def]
    """The domain's federation defaults with `changes` merged in (nested mappings merged too)."""
    from domains import load_domain
    from fedflow.config import FederationConfig

    merged = load_domain(domain).spec.federation.model_dump()
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return FederationConfig.model_validate(merged)


# A run's final global weights and the per-site hold-out metrics of its last round.
Outcome = tuple[Mapping[str, np.ndarray], Mapping[str, Mapping[str, float]]]
Runner = Callable[[str, str, object], Outcome]


def metrics_sha256(per_site: Mapping[str, Mapping[str, float]]) -> str:
    """SHA-256 of the per-site metrics as exact float reprs, in site and name order."""
    exact = {site: {k: repr(float(v)) for k, v in sorted(m.items())} for site, m in sorted(per_site.items())}
    text = json.dumps(exact)
    return hashlib.sha256(text.encode()).hexdigest()


def flow_runner(name: str, domain: str, config: object) -> Outcome:
    """Run through the Prefect flow (simulation)."""
    from fedflow.checkpoint import load_checkpoint
    from flows.coordinator import federated_training

    result = federated_training(domain=domain, federation=config, run_name=name)
    return load_checkpoint(result.federation_id)[1], result.per_site


def engine_runner(name: str, domain: str, config: object) -> Outcome:
    """Run through the engine alone: the driver, site agents in this process, an in-memory recorder."""
    import logging
    import tempfile

    from site_helpers import engine_plan, in_process_channel

    from domains import load_domain
    from fedflow.federation import run_federation
    from fedflow.federation.memory_recorder import MemoryRecorder

    loaded = load_domain(domain)
    with tempfile.TemporaryDirectory() as folder:
        channel = in_process_channel(loaded, Path(folder))
        plan = engine_plan(loaded, config, name)  # type: ignore[arg-type]
        recorder = MemoryRecorder(checkpoints=False)
        outcome = run_federation(plan, channel=channel, recorder=recorder, log=logging.getLogger("digests"))
    return recorder.rounds[-1].state.weights, outcome.per_site


def digests(runner: Runner, names: list[str] | None = None) -> dict[str, dict[str, str]]:
    """Each run's final-weights and final-metrics digests."""
    out = {}
    for name in names or list(RUNS):
        domain, changes = RUNS[name]
        weights, per_site = runner(name, domain, federation_config(domain, changes))
        out[name] = {"weights": weights_sha256(weights), "metrics": metrics_sha256(per_site)}
    return out


def _record() -> None:
    sys.path.insert(0, str(HERE.parent / "benchmarks"))
    from stores import temporary_stores

    import flows  # noqa: F401

    with temporary_stores(domains=True) as root:
        write_extra_domains(root / "domains")
        found = digests(flow_runner)
    recorded = recorded_digests() if DIGESTS.is_file() else {}
    recorded[machine_kind()] = found
    DIGESTS.write_text(json.dumps(recorded, indent=1) + "\n")
    print(json.dumps(found, indent=1))


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        raise SystemExit(__doc__)
    sys.path.insert(0, str(HERE))
    _record()
