"""fedflow and Flower side by side on the workload of ANCHORS.md, in one invocation.

For each K clients x R rounds and seed, runs `benchmarks/fedflow_workload.py` (fedflow's full
pipeline: Prefect, GX validation, MLflow logging and registration) and
`benchmarks/flower/flower_workload.py` (Flower 1.42 on its Ray simulation engine, in the
`.venv-flower` made by `benchmarks/flower/setup.sh`), each in its own process, one after the
other (each once the machine is idle again), and prints wall time, peak memory of the whole
process tree (PSS), test accuracy and bytes per client per round for both, with the ratios
fedflow / Flower.

    bash benchmarks/flower/setup.sh
    .venv/bin/python benchmarks/side_by_side.py --runs 10x20,100x5 --seeds 0,1,2 [--launcher run-simulation]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def settle(limit_s: float = 30.0) -> None:
    """Wait until the machine is idle: Ray's workers and Prefect's server outlive their runs briefly."""
    import psutil

    deadline = time.monotonic() + limit_s
    while psutil.cpu_percent(interval=1.0) > 10 and time.monotonic() < deadline:
        pass


def run(command: list[str], out: Path) -> dict[str, float]:
    """Run one side (on an idle machine) and read its JSON."""
    settle()
    completed = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if completed.returncode != 0:
        raise RuntimeError(f"{command[1]} failed:\n{completed.stderr[-3000:]}")
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", default="10x20,100x5", help="comma-separated KxR")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--launcher", default="run-simulation", choices=["run-simulation", "flwr-run"])
    parser.add_argument("--flower-python", type=Path, default=ROOT / ".venv-flower" / "bin" / "python")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    if not args.flower_python.exists():
        sys.exit(f"{args.flower_python} not found: run `bash benchmarks/flower/setup.sh` first")
    keys = ["wall_seconds", "peak_memory_mb", "test_accuracy", "bytes_per_round_per_client"]
    lines = [
        "| K × R | framework | wall s | peak memory MB (PSS) | test accuracy | bytes / client / round |",
        "|---|---|---|---|---|---|",
    ]
    ratios = [
        "",
        "| K × R | wall ratio fedflow / Flower | memory ratio | accuracy difference |",
        "|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        for spec in args.runs.split(","):
            clients, rounds = (int(v) for v in spec.lower().split("x"))
            results: dict[str, list[dict[str, float]]] = {"fedflow": [], "Flower": []}
            for seed in (int(s) for s in args.seeds.split(",")):
                common = ["--clients", str(clients), "--rounds", str(rounds), "--seed", str(seed)]
                out = Path(folder) / f"fedflow-{spec}-{seed}.json"
                results["fedflow"].append(
                    run([sys.executable, str(HERE / "fedflow_workload.py"), *common, "--json", str(out)], out)
                )
                out = Path(folder) / f"flower-{spec}-{seed}.json"
                flower = [str(args.flower_python), str(HERE / "flower" / "flower_workload.py"), *common]
                results["Flower"].append(run([*flower, "--launcher", args.launcher, "--json", str(out)], out))
                print(
                    f"{spec} seed {seed}: "
                    + ", ".join(f"{name} {r[-1]['wall_seconds']:.1f} s" for name, r in results.items()),
                    file=sys.stderr,
                )
            means = {
                name: {k: statistics.mean(r[k] for r in runs) for k in keys} for name, runs in results.items()
            }
            for name, m in means.items():
                lines.append(
                    f"| {clients} × {rounds} | {name} | {m['wall_seconds']:.1f} | "
                    f"{m['peak_memory_mb']:.0f} | {m['test_accuracy']:.3f} | "
                    f"{m['bytes_per_round_per_client']:,.0f} |"
                )
            f, w = means["fedflow"], means["Flower"]
            ratios.append(
                f"| {clients} × {rounds} | {f['wall_seconds'] / w['wall_seconds']:.2f} | "
                f"{f['peak_memory_mb'] / w['peak_memory_mb']:.2f} | "
                f"{f['test_accuracy'] - w['test_accuracy']:+.3f} |"
            )
    text = "\n".join(lines + ratios) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
