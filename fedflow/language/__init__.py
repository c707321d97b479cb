"""Federated fine-tuning of causal language models: frozen base model, LoRA adapters that travel."""
