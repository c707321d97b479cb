"""Texts to fixed-length token arrays at the site: one row per text, right-padded with -1."""

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

PAD = -1  # token id of padding in fedflow's token arrays (never a real token)

# A fast tokenizer is not safe to call from two threads at once (its truncation state is shared).
_TOKENISER_LOCK = threading.Lock()


def tokenise(texts: Sequence[str], tokenizer: Any, *, max_length: int) -> np.ndarray:
    """int64 array (texts, max_length): each text's tokens, cut at max_length, right-padded with -1.

    A text that ends before max_length gets the end-of-text token, so the model learns where
    texts end; a cut text does not (it did not end there).
    """
    with _TOKENISER_LOCK:
        encoded = tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=max_length)
    eos = tokenizer.eos_token_id
    out = np.full((len(texts), max_length), PAD, dtype=np.int64)
    for row, ids in enumerate(encoded["input_ids"]):
        ids = [*ids, eos] if eos is not None and len(ids) < max_length else list(ids)
        out[row, : len(ids)] = ids
    return out
