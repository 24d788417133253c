"""LoRA in the RL trainer: peft adapters on the learner, merged weights for the sampler.

With ``lora.r > 0`` the learner trains only low-rank adapters (``peft``, extra
``agentrl[lora]``) on top of frozen base weights:

* :func:`wrap_lora` puts fresh adapters on a transformers model, or loads the adapters
  of a checkpoint (``resume``) as trainable;
* the sampler still serves full weights: :func:`merged_state_dict` computes
  ``W + alpha / r * B @ A`` for every adapted layer (the model itself stays unmerged,
  so training continues on the adapters) under the base model's own tensor names, and
  :class:`MergedView` is the module handed to ``policy.update_weights``: its
  ``state_dict()`` is the merged one and its forward pass is the adapted model's, which
  the engine's logprobs are checked against after each push;
* checkpoints hold the adapter (``adapter_config.json`` + ``adapter_model.safetensors``,
  written by peft's ``save_pretrained``): ``PeftModel.from_pretrained(base, step_N)``
  loads it, :func:`merge_checkpoint` writes a plain ``from_pretrained`` folder from it.

Why merge rather than vLLM's own adapter loading (``enable_lora`` + ``LoRARequest``):
see docs/train.md (measured on the CPU build; merging keeps the engine on its fast
no-LoRA path and the existing verified sync).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from agentrl.errors import CheckpointError, ConfigError

__all__ = ["wrap_lora", "merged_state_dict", "MergedView", "is_adapter_dir", "merge_checkpoint",
           "trainable_parameters"]

ADAPTER_CONFIG = "adapter_config.json"


def _peft() -> Any:
    try:
        import peft
    except ImportError as exc:
        raise ConfigError("lora.r > 0 needs peft: pip install 'agentrl[lora]'") from exc
    return peft


def is_adapter_dir(path: str | Path) -> bool:
    """True when ``path`` is a folder holding a peft adapter (a LoRA checkpoint)."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def wrap_lora(model: Any, section: Any, *, adapter: str | Path | None = None, seed: int = 0) -> Any:
    """``model`` with trainable LoRA adapters (base weights frozen).

    Args:
        model: a transformers causal LM (the base weights).
        section: the run's :class:`~agentrl.train.config.LoraSection` (r, alpha, dropout, targets).
        adapter: a checkpoint folder whose adapters to load (resume); None: fresh adapters
            (``B = 0``, so the adapted model equals the base model at start).
        seed: seeds the random init of the fresh ``A`` matrices (the global RNG is untouched).
    """
    peft = _peft()
    if adapter is not None:
        if not is_adapter_dir(adapter):
            raise CheckpointError(f"{adapter} holds no {ADAPTER_CONFIG}: not a LoRA checkpoint of this run")
        return peft.PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    targets: Any = list(section.targets)
    if targets == ["all-linear"]:
        targets = "all-linear"
    config = peft.LoraConfig(r=int(section.r), lora_alpha=float(section.alpha),
                             lora_dropout=float(section.dropout), target_modules=targets,
                             bias="none", task_type="CAUSAL_LM")
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return peft.get_peft_model(model, config)
    except ValueError as exc:  # peft: target modules not found in the model
        raise ConfigError(f"lora.targets={list(section.targets)} do not fit the model: {exc}") from exc


def trainable_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


@torch.no_grad()
def merged_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """The adapted model's weights as a plain state dict under the base model's names.

    Every adapted linear layer's weight is ``W + delta`` of its active adapters; the
    adapter tensors themselves are left out. The model is not modified.
    """
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    merged: dict[str, torch.Tensor] = {}
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer):
            weight = module.get_base_layer().weight
            delta = torch.zeros_like(weight)
            for adapter in module.active_adapters:
                if adapter in module.lora_A:
                    delta += module.get_delta_weight(adapter).to(weight.dtype)
            merged[f"{name}.weight"] = (weight + delta).detach()
    out: dict[str, torch.Tensor] = {}
    for key, value in base.state_dict().items():
        if ".lora_" in key:
            continue
        key = key.replace(".base_layer.", ".")
        out[key] = merged.get(key, value)
    return out


class MergedView(torch.nn.Module):
    """What a policy's ``update_weights`` receives for a LoRA learner.

    ``state_dict()`` gives the merged weights (base names); calling it runs the adapted
    model (same function, unmerged), which the engine's logprobs are verified against.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.inner = model

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner(*args, **kwargs)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return merged_state_dict(self.inner)


def merge_checkpoint(adapter_dir: str | Path, base: str | Path, out: str | Path) -> Path:
    """Write base + adapter of a LoRA checkpoint as a plain ``from_pretrained`` folder (and tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    peft = _peft()
    if not is_adapter_dir(adapter_dir):
        raise CheckpointError(f"{adapter_dir} holds no {ADAPTER_CONFIG}: not a LoRA checkpoint")
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    merged = peft.PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    dest = Path(out)
    merged.save_pretrained(dest, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(adapter_dir)).save_pretrained(dest)
    return dest
