#!/usr/bin/env bash
# Create the Flower benchmark venv at <repo>/.venv-flower (idempotent).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="$REPO/.venv-flower"
STAMP="$VENV/.setup-done"

if [[ -f "$STAMP" ]]; then
  echo "flower venv already set up at $VENV (delete $STAMP to redo)"
  exit 0
fi

python3 -m venv "$VENV"
# keep the venv out of git without touching the repo's .gitignore
printf '*\n' > "$VENV/.gitignore"
# torch first, exactly this version: the CPU build that lies on this machine
"$VENV/bin/python" -m pip install torch==2.13.0
"$VENV/bin/python" -m pip install -r "$HERE/requirements.txt"
"$VENV/bin/python" -c "import flwr, torch, sklearn, ray; print('flwr', flwr.__version__, 'torch', torch.__version__, 'ray', ray.__version__)"
touch "$STAMP"
