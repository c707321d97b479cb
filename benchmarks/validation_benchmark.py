"""How long `fedflow validate` takes on a wide site file, split into imports, read and GX.

Writes a synthetic domain (config.yaml, the finance template's model.py, a schema.py adding no check) and one
site file of numeric and categorical columns into a temporary folder, then:

- runs the real command, `fedflow validate bench --data site.csv`, in a fresh process, and times
  it end to end (what a site's user waits for);
- runs the same steps in a fresh process with a timer around each: the imports the command makes
  (the CLI module, the domain loader, the reader, `validation`), reading the file, and the GX run
  (building the suite and validating the one batch).

Default shapes: 100 columns x 10,000 rows (the issue's target: <= 3 s) and 86 columns x 1,940 rows
(the wide insurance table of issue #17). The best of `--repeats` runs is reported.

    .venv/bin/python benchmarks/validation_benchmark.py [--repeats 3] [--shape 100x10000 ...]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
CATEGORIES = ["a", "b", "c", "d"]

# The command's own steps, each timed; run in a fresh interpreter so imports are cold.
_STEPS = """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
import fedflow.cli  # noqa: F401  (what the `fedflow` entry point imports before any command)
from domains import load_domain
from fedflow.sitedata import read_site_frame
import flows  # noqa: F401
from validation import validate_frame
t1 = time.perf_counter()
try:  # what `fedflow validate` loads: the contract, not model.py (before #17's lazy imports: all)
    domain = load_domain("bench", with_model=False)
except TypeError:
    domain = load_domain("bench")
frame = read_site_frame(Path(sys.argv[1]), domain.spec, site="local")
t2 = time.perf_counter()
summary = validate_frame(frame, domain.expectations, site="local", suite_name="bench")
t3 = time.perf_counter()
assert summary.success, summary.reasons()
print(json.dumps({"imports": t1 - t0, "read": t2 - t1, "gx": t3 - t2,
                  "expectations": len(domain.expectations), "torch": "torch" in sys.modules}))
"""


def write_domain(root: Path, columns: int, rows: int, seed: int = 0) -> Path:
    """A domain `bench` with `columns` feature columns (a quarter categorical) and its site file."""
    folder = root / "bench"
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "domains" / "finance" / "model.py", folder / "model.py")
    # The checks derived from config.yaml, nothing more (a schema.py older commits require).
    (folder / "schema.py").write_text(
        "from fedflow.expectations import expectations_from_spec\n\n\n"
        "def expectations(spec):\n    return expectations_from_spec(spec)\n"
    )
    rng = np.random.default_rng(seed)
    n_cat = columns // 4
    numeric = [f"x{i:03d}" for i in range(columns - n_cat)]
    categorical = [f"c{i:03d}" for i in range(n_cat)]
    lines = [
        "name: bench",
        "description: synthetic wide table for the validation benchmark",
        "task: binary",
        "target: {column: y, positive_value: 'yes'}",
        "numeric:",
        *(f"  - {{name: {n}, min: -100, max: 100}}" for n in numeric),
        "categorical:",
        *(f"  - {{name: {c}, categories: [{', '.join(CATEGORIES)}]}}" for c in categorical),
        "sites: {local: site.csv}",
        "quality: {min_rows: 20}",
    ]
    (folder / "config.yaml").write_text("\n".join(lines) + "\n")
    data: dict[str, object] = {n: np.round(rng.normal(0, 10, rows), 3) for n in numeric}
    data.update({c: rng.choice(CATEGORIES, rows) for c in categorical})
    data["y"] = rng.choice(["yes", "no"], rows)
    path = folder / "site.csv"
    pd.DataFrame(data).to_csv(path, index=False)
    return path


def _run(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return elapsed, done.stdout


def measure(columns: int, rows: int, repeats: int) -> dict[str, object]:
    """Best-of-`repeats` wall time of `fedflow validate`, and of each of its steps."""
    with tempfile.TemporaryDirectory() as tmp:
        data = write_domain(Path(tmp), columns, rows)
        # PYTHONPATH: this checkout's code (a worktree of an
        # older commit measures that commit).
        env = {**os.environ, "FEDFLOW_DOMAINS_PATH": tmp, "PYTHONPATH": str(ROOT)}
        # `python -m fedflow.cli` is the console script (it calls the same entry), and also runs an
        # older commit's code from a worktree, whose console script differs.
        command = [sys.executable, "-m", "fedflow.cli", "validate", "bench", "--data", str(data)]
        wall = min(_run(command, env)[0] for _ in range(repeats))
        splits = [json.loads(_run([sys.executable, "-c", _STEPS, str(data)], env)[1]) for _ in range(repeats)]
    best = min(splits, key=lambda s: s["imports"] + s["read"] + s["gx"])
    return {
        "shape": f"{columns}x{rows}",
        "fedflow_validate_s": round(wall, 2),
        **{k: round(v, 2) if isinstance(v, float) else v for k, v in best.items()},
    }


def main() -> None:
    """Print one JSON line per shape."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shape", action="append", help="COLUMNSxROWS (repeatable)")
    args = parser.parse_args()
    for shape in args.shape or ["100x10000", "86x1940"]:
        columns, rows = (int(part) for part in shape.split("x"))
        print(json.dumps(measure(columns, rows, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
