"""Texts to fixed-length token arrays at the site: one row per text, right-padded with -1."""

from collections.abc import Sequence
from typing import Any

import numpy as np

from fedflow.language.lora_model import PAD


def tokenise(texts: Sequence[str], tokenizer: Any, *, max_length: int) -> np.ndarray:
    """int64 array (texts, max_length): each text's tokens then the end-of-text token, cut at max_length."""
    encoded = tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=max_length - 1)
    eos = tokenizer.eos_token_id
    out = np.full((len(texts), max_length), PAD, dtype=np.int64)
    for row, ids in enumerate(encoded["input_ids"]):
        ids = [*ids, eos] if eos is not None else list(ids)
        out[row, : len(ids)] = ids[:max_length]
    return out


def token_counts(tokens: np.ndarray) -> np.ndarray:
    """Predicted tokens per row (every token after the first that is not padding)."""
    return np.asarray((tokens[:, 1:] != PAD).sum(axis=1))
