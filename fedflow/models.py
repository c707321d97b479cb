"""Ready-made model builders a domain's model.py can use (or replace with its own)."""

import torch


def mlp(*, input_dim: int, output_dim: int, hidden: list[int]) -> torch.nn.Module:
    """A multilayer perceptron input_dim -> hidden... -> output_dim with ReLU (linear if no hidden)."""
    layers: list[torch.nn.Module] = []
    width = input_dim
    for size in hidden:
        layers += [torch.nn.Linear(width, size), torch.nn.ReLU()]
        width = size
    layers.append(torch.nn.Linear(width, output_dim))
    return torch.nn.Sequential(*layers)
