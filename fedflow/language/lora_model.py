"""A base causal LM with LoRA adapters (via `peft`) whose federated state is the adapters alone.

The module's forward takes token ids (right-padded with -1) and returns the log-probability of
every next token, so the training and evaluation loops of `fedflow.local` work unchanged and
never hold a (batch, length, vocabulary) tensor longer than one batch.
"""

import copy
from collections.abc import Mapping

import torch

from fedflow.language.base_model import load_base_model, load_tokenizer, locate_base_model
from fedflow.language.options import LanguageModelOptions
from fedflow.language.tokens import PAD


class LoraLanguageModel(torch.nn.Module):
    """Frozen base weights (shared with every other copy in the process) plus trainable adapters."""

    def __init__(self, *, peft_model: torch.nn.Module, pad_token_id: int) -> None:
        super().__init__()
        self.peft = peft_model
        self.pad_token_id = pad_token_id

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Log-probability of each next token, shape (batch, length - 1); 0 where the target is padding."""
        present = tokens != PAD
        ids = torch.where(present, tokens, torch.full_like(tokens, self.pad_token_id))
        logits = self.peft(input_ids=ids, attention_mask=present.long()).logits[:, :-1]
        targets = ids[:, 1:]
        logprobs = -torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        return logprobs * present[:, 1:]

    def adapter_parameters(self) -> dict[str, torch.nn.Parameter]:
        """The trainable adapter parameters by name."""
        return {name: p for name, p in self.named_parameters() if p.requires_grad}

    def federated_state(self) -> dict[str, torch.Tensor]:
        """What crosses the site boundary: the adapters, never the base weights."""
        return {name: p.detach() for name, p in self.adapter_parameters().items()}

    def load_federated_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Set the adapters; names and shapes must match exactly."""
        params = self.adapter_parameters()
        missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        if missing or extra:
            raise ValueError(f"adapter names do not match: missing {missing[:3]}, unexpected {extra[:3]}")
        with torch.no_grad():
            for name, param in params.items():
                got, want = tuple(state[name].shape), tuple(param.shape)
                if got != want:
                    raise ValueError(f"adapter {name!r} has shape {got}, expected {want}")
                param.copy_(state[name])

    def parameter_counts(self) -> tuple[int, int]:
        """(adapter parameters, all parameters)."""
        adapters = sum(p.numel() for p in self.adapter_parameters().values())
        return adapters, sum(p.numel() for p in self.parameters())


def _shared_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A new module tree over the same (frozen) tensors: adapters are injected into the copy only."""
    memo: dict[int, object] = {id(t): t for t in model.parameters()}
    memo.update({id(t): t for t in model.buffers()})
    return copy.deepcopy(model, memo)


def lora_language_model(options: LanguageModelOptions) -> LoraLanguageModel:
    """The base model of `options` with fresh LoRA adapters (A random from torch's RNG, B zero)."""
    from peft import LoraConfig, get_peft_model

    location = locate_base_model(options)
    tokenizer = load_tokenizer(location)
    base = _shared_copy(load_base_model(location))
    config = LoraConfig(
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=0.0,  # dropout would draw from torch's global RNG, shared by concurrent sites
        target_modules=list(options.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        peft_model = get_peft_model(base, config)
    except ValueError as error:
        raise ValueError(
            f"model.target_modules {options.target_modules} do not fit the base model: {error}"
        ) from error
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return LoraLanguageModel(peft_model=peft_model, pad_token_id=int(pad))
