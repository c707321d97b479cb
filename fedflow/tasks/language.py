"""Causal language modelling: next-token log-likelihood of each site's texts; perplexity.

A row is one text (the target column). Its model input and its label are the same token array
(`fedflow.language.tokens`); the model returns each next token's log-probability, so the loss
is their negative mean over the tokens that are not padding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pydantic import ValidationError

from fedflow.capabilities import EXAMPLE_LEVEL_DP, FLIPS_LABELS, FROZEN_BASE_MODEL, SENDS_SITE_EXTRAS, Refusal
from fedflow.domain import DomainSpec
from fedflow.errors import validation_messages
from fedflow.expectations import Expectation, text_expectations
from fedflow.language.base_model import load_tokenizer, locate_base_model, weights_digest
from fedflow.language.options import language_options
from fedflow.language.tokens import PAD, tokenise
from fedflow.tabular import Preprocessor
from fedflow.tasks.base import AT_LEAST_ONE, NON_NEGATIVE, TEXT_GENERATION, FrozenBase, valid_ranges

if TYPE_CHECKING:
    import torch


def _mask(labels: np.ndarray) -> np.ndarray:
    return np.asarray(labels[:, 1:] != PAD)


class LanguageTask:
    """Fine-tune a causal LM on the texts of the domain's target column."""

    name: str = "language"
    metric_names: tuple[str, ...] = ("loss", "perplexity")
    default_champion_metric: str = "perplexity"
    higher_is_better: frozenset[str] = frozenset()
    metric_ranges: Mapping[str, tuple[float, float]] = valid_ranges(
        loss=NON_NEGATIVE, perplexity=AT_LEAST_ONE
    )
    has_classes: bool = False
    predict_batch_size: int = 8  # logits of a batch are (rows, length, vocabulary): keep them small
    reads_text_folders: bool = True  # e.g. a hospital's folder of clinical notes, one per file
    serving: str = TEXT_GENERATION
    capabilities: frozenset[str] = frozenset({FROZEN_BASE_MODEL})
    refuses: tuple[Refusal, ...] = (
        Refusal(
            EXAMPLE_LEVEL_DP,
            "Opacus does not support a frozen base model with adapters here; use privacy.mode central "
            "or distributed (DP-FedAvg clips and noises the adapter updates)",
        ),
        Refusal(FLIPS_LABELS, "a language model's text has no labels to flip"),
        Refusal(SENDS_SITE_EXTRAS, "control variates are not supported for adapters on a frozen base model"),
    )

    def spec_problems(self, spec: DomainSpec) -> list[str]:
        """The text column alone, sensible text bounds, and `model` options that parse."""
        problems = []
        if spec.feature_columns:
            problems.append(
                "a language domain trains on its text column (`target`) alone; declare no features"
            )
        if spec.text.min_chars > spec.text.max_chars:
            problems.append("text.min_chars is larger than text.max_chars")
        try:
            language_options(spec.model)
        except ValidationError as error:
            problems += validation_messages(error, prefix="model")
        return problems

    def target_expectations(self, spec: DomainSpec) -> list[Expectation]:
        """Texts of bounded length, decoded cleanly, and (by default) free of obvious PII."""
        return text_expectations(spec.target.column, spec)

    def class_names(self, spec: DomainSpec) -> list[str]:
        """No classes: the label is the text itself."""
        return []

    def example_output(self, classes: list[str], rows: int) -> pd.DataFrame:
        """A generated continuation (the registered model generates text, one prompt per row)."""
        return pd.DataFrame({"generated": ["…"] * rows})

    def frozen_base(self, spec: DomainSpec) -> FrozenBase:
        """The base model of the domain's `model` options, as located on this machine."""
        location = locate_base_model(language_options(spec.model))
        return FrozenBase(sha256=weights_digest(location), location=location)

    def output_dim(self, spec: DomainSpec) -> int:
        """Not used: the vocabulary is the base model's."""
        return 0

    def labels(self, frame: pd.DataFrame, spec: DomainSpec) -> np.ndarray:
        """The texts as token arrays (int64, -1 = padding), tokenised with the base model's tokenizer."""
        options = language_options(spec.model)
        tokenizer = load_tokenizer(locate_base_model(options))
        texts = frame[spec.target.column].astype(str).tolist()
        return tokenise(texts, tokenizer, max_length=options.max_length)

    def features(self, frame: pd.DataFrame, spec: DomainSpec, preprocessor: Preprocessor) -> np.ndarray:
        """The same token arrays: the model reads the text it predicts."""
        return self.labels(frame, spec)

    def inputs(self, features: np.ndarray) -> torch.Tensor:
        """int64 token ids."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(features, dtype=np.int64))

    def global_metrics(self, means: dict[str, float]) -> dict[str, float]:
        """Perplexity is exp of the mean loss (a mean of per-site perplexities would overstate it)."""
        out = dict(means)
        for prefix in ("", "personalised/"):
            if f"{prefix}loss" in means and f"{prefix}perplexity" in means:
                out[f"{prefix}perplexity"] = math.exp(min(means[f"{prefix}loss"], 700.0))
        return out

    def loss(
        self, outputs: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None
    ) -> torch.Tensor:
        """Mean negative log-likelihood per predicted token."""
        mask = targets[:, 1:] != PAD
        return -(outputs * mask).sum() / mask.sum().clamp(min=1)

    def predict(self, outputs: torch.Tensor) -> np.ndarray:
        """Each next token's log-probability (0 at padding)."""
        return outputs.detach().numpy()

    def metrics(self, labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
        """Token-level negative log-likelihood (`loss`) and its exponential, perplexity."""
        mask = _mask(labels)
        tokens = int(mask.sum())
        if tokens == 0:
            return {"loss": math.nan, "perplexity": math.nan}
        nll = float(-(predictions.astype(np.float64) * mask).sum() / tokens)
        return {"loss": nll, "perplexity": math.exp(min(nll, 700.0))}

    def example_losses(self, labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        """Each text's mean negative log-likelihood per token (for membership-inference audits)."""
        mask = _mask(labels)
        return np.asarray(
            -(predictions.astype(np.float64) * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)
        )

    def output_frame(self, predictions: np.ndarray, spec_classes: list[str]) -> pd.DataFrame:
        """Per text: its tokens' mean log-likelihood and perplexity."""
        mean_logprob = predictions.astype(np.float64).sum(axis=1) / np.maximum(
            (predictions != 0).sum(axis=1), 1
        )
        return pd.DataFrame({"log_likelihood": mean_logprob, "perplexity": np.exp(-mean_logprob)})
