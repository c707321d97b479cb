"""Healthcare model: a small multilayer perceptron giving the logit of heart disease.

Replace `build_model` with any torch module taking `input_dim` features to `output_dim` outputs.
"""

import torch

from fedflow.models import mlp


def build_model(*, input_dim: int, output_dim: int = 1, hidden: list[int] | None = None) -> torch.nn.Module:
    """An MLP with one hidden layer of 16 by default (config.yaml `model.hidden`)."""
    return mlp(input_dim=input_dim, output_dim=output_dim, hidden=[16] if hidden is None else hidden)
