"""fedflow: federated learning across organisations — the engine (plain PyTorch and NumPy)."""

__version__ = "0.1.0"
