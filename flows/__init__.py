"""Prefect flows: the coordinator flow, the site tasks, MLflow tracking."""

from flows.environment import apply_defaults

apply_defaults()
