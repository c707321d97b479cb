"""MLflow "model from code" for a federated tabular model (no pickle anywhere).

MLflow stores this file with every registered version and runs it on load. The version's
artifacts hold everything else: the weights (safetensors), the federated preprocessing (JSON),
the domain's model.py and the options to build it. Prediction takes raw site columns.
"""

import importlib.util
import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel

from fedflow.params import decode, get_weights, set_weights
from fedflow.sitedata import mask_missing_codes
from fedflow.tabular import Preprocessor
from fedflow.tasks import get_task


class FederatedTabularModel(PythonModel):  # type: ignore[misc]
    """Raw columns -> federated preprocessing -> torch model -> the task's prediction columns."""

    def load_context(self, context: Any) -> None:
        """Rebuild preprocessing and the network from the version's artifacts."""
        meta = json.loads(Path(context.artifacts["meta"]).read_text())
        self.preprocessor = Preprocessor.model_validate_json(
            Path(context.artifacts["preprocessor"]).read_text()
        )
        self.missing_codes: dict[str, list[float]] = meta.get("missing_codes", {})
        spec = importlib.util.spec_from_file_location(
            "fedflow_registered_model", context.artifacts["model_code"]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.task = get_task(meta.get("task", "binary"))
        self.classes: list[str] = meta.get("classes", [])
        self.model = module.build_model(
            input_dim=meta["input_dim"], output_dim=meta.get("output_dim", 1), **meta["model_options"]
        )
        payload = Path(context.artifacts["weights"]).read_bytes()
        set_weights(self.model, decode(payload, like=get_weights(self.model)))
        self.model.train(False)  # inference mode (same as Module.eval)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Binary: probability and 0/1 prediction; multiclass: class and probabilities; regression: value."""
        frame = mask_missing_codes(model_input, self.missing_codes)
        features = self.preprocessor.transform(frame)
        with torch.no_grad():
            outputs = self.model(torch.from_numpy(features))
        return self.task.output_frame(self.task.predict(outputs), self.classes)


mlflow.models.set_model(FederatedTabularModel())
