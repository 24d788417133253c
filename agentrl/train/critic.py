"""The critic of PPO: a value head on the policy's last hidden state, or a separate model.

Values are aligned with tokens like logprobs: ``values[:, t]`` estimates the return from
token ``t`` on, given ``ids[:t]``, so it is read from the hidden state at position
``t - 1`` (the state the token was sampled from); ``values[:, 0] = 0``.

* ``head``: a linear head on the policy's final hidden state (the input of its LM head,
  captured with a forward hook during the policy's own forward pass: no second pass).
  The value loss also trains the shared backbone.
* ``model``: a separate causal LM (``algo.critic_path``, default a copy of the policy)
  whose decoder feeds its own head.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from agentrl.errors import ConfigError

__all__ = ["Critic", "capture_hidden", "shift_values"]


def _hidden_size(model: Any) -> int:
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    size = getattr(cfg, "hidden_size", None)
    if not size:
        raise ConfigError(f"cannot find hidden_size in the config of {type(model).__name__}")
    return int(size)


@contextmanager
def capture_hidden(model: Any) -> Iterator[dict[str, torch.Tensor]]:
    """While inside, the input of ``model``'s output layer (final hidden states [B, L, H])
    is stored under ``"hidden"`` each time the model runs."""
    head = model.get_output_embeddings()
    if head is None:
        raise ConfigError(f"{type(model).__name__} has no output layer to read hidden states from")
    box: dict[str, torch.Tensor] = {}

    def hook(_mod: nn.Module, args: tuple[Any, ...]) -> None:
        box["hidden"] = args[0]

    handle = head.register_forward_pre_hook(hook)
    try:
        yield box
    finally:
        handle.remove()


def shift_values(v: torch.Tensor) -> torch.Tensor:
    """[B, L] value read at each position -> value aligned with the token after it."""
    return torch.cat([torch.zeros_like(v[:, :1]), v[:, :-1]], dim=1)


class Critic(nn.Module):
    """Value function: ``head`` on the policy's hidden states, or ``backbone`` + ``head``."""

    def __init__(self, policy: Any, mode: str, path: str | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        if mode not in ("head", "model"):
            raise ConfigError(f"critic mode must be head or model, got {mode!r}")
        self.mode = mode
        self.backbone: nn.Module | None = None
        if mode == "model":
            from transformers import AutoModelForCausalLM

            from agentrl.policy._common import resolve_model_path

            source = resolve_model_path(path) if path else None
            if source is not None:
                lm = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
            else:
                lm = AutoModelForCausalLM.from_config(policy.config, dtype=dtype)
                lm.load_state_dict(policy.state_dict())
            self.backbone = lm.base_model  # the decoder, without the LM head
            size = _hidden_size(lm)
        else:
            size = _hidden_size(policy)
        self.head = nn.Linear(size, 1, dtype=dtype)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def values_from_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """[B, L, H] hidden states -> [B, L] values aligned with tokens."""
        return shift_values(self.head(hidden.to(self.head.weight.dtype)).squeeze(-1).float())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Values of the separate critic model ([B, L]); ``head`` mode reads hidden states instead."""
        if self.backbone is None:
            raise ConfigError("a head-only critic reads the policy's hidden states: use values_from_hidden")
        mask = attention_mask.long()
        out = self.backbone(
            input_ids=input_ids, attention_mask=mask,
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0), use_cache=False,
        )
        return self.values_from_hidden(out.last_hidden_state)
