"""A tiny randomly initialised Llama-style model and BPE tokenizer, saved like any local model folder.

Tests load it through the same `transformers` code as SmolLM2, in seconds.
"""

import shutil
from pathlib import Path

import pandas as pd
import torch
import yaml

from domains import DOMAINS_ROOT


def save_tiny_llama(folder: Path, texts: list[str], *, seed: int = 0) -> Path:
    """Train a 400-token byte-level BPE on `texts`, build a 2-layer Llama, save both to `folder`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<unk>", "<eos>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", eos_token="<eos>", pad_token="<pad>"
    )
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
        initializer_range=0.3,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def tiny_language_domain(
    root: Path, model_folder: Path, *, name: str = "tiny_language", **config: object
) -> Path:
    """A copy of the shipped language template under `root` that fine-tunes the tiny model."""
    target = root / name
    shutil.copytree(DOMAINS_ROOT / "language", target)
    spec = yaml.safe_load((target / "config.yaml").read_text())
    spec["name"] = name
    spec["model"]["path"] = str(model_folder)
    spec["federation"]["local"].update({"max_steps": 4, "learning_rate": 0.05})
    for key, value in config.items():
        spec[key] = value
    (target / "config.yaml").write_text(yaml.safe_dump(spec))
    return target


def speeches(site: str) -> list[str]:
    """The shipped template's speeches of one site."""
    return pd.read_csv(DOMAINS_ROOT / "language" / "data" / f"{site}.csv")["speech"].astype(str).tolist()
