"""Fixtures of the policy tests: an independent transformers reference for logprobs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

RefLogprobs = Callable[..., list[float]]


@pytest.fixture(scope="session")
def tiny_hf_model(tiny_model_path: Path) -> Any:
    """The tiny model in transformers, float32, eval mode (do not modify: copy it)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def reference_logprobs(tiny_hf_model: Any) -> RefLogprobs:
    """``fn(prompt_ids, completion_ids, model=tiny) -> logprobs``: one fp32 forward pass over both.

    logprob of completion token t = log_softmax(logits at position len(prompt) + t - 1)[token].
    """
    import torch

    def fn(prompt: Sequence[int], completion: Sequence[int], model: Any = None) -> list[float]:
        model = tiny_hf_model if model is None else model
        ids = torch.tensor([list(prompt) + list(completion)])
        with torch.no_grad():
            logits = model(ids).logits[0].float()  # [L, V]
        logp = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)  # [T, V]
        return logp.gather(-1, torch.tensor(list(completion))[:, None])[:, 0].tolist()

    return fn
