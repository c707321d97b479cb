"""Differential privacy steps of the update path and their accounting."""
