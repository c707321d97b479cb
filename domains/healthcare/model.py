"""Healthcare model: a small multilayer perceptron giving the logit of heart disease."""

import torch


def build_model(*, input_dim: int, output_dim: int = 1, hidden: list[int] | None = None) -> torch.nn.Module:
    """An MLP input_dim -> hidden... -> output_dim (a linear model when `hidden` is empty)."""
    layers: list[torch.nn.Module] = []
    width = input_dim
    for size in hidden if hidden is not None else [16]:
        layers += [torch.nn.Linear(width, size), torch.nn.ReLU()]
        width = size
    layers.append(torch.nn.Linear(width, output_dim))
    return torch.nn.Sequential(*layers)
