"""A throw-away MLflow store, artifact folder and checkpoint folder for one benchmark run."""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def temporary_stores(*, domains: bool = False) -> Iterator[Path]:
    """Point MLflow, artifacts, checkpoints (and, if asked, extra domains) at a temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        os.environ["FEDFLOW_ARTIFACT_ROOT"] = str(root / "artifacts")
        os.environ["FEDFLOW_STATE_DIR"] = str(root / "state")
        if domains:
            (root / "domains").mkdir()
            os.environ["FEDFLOW_DOMAINS_PATH"] = str(root / "domains")
        yield root
