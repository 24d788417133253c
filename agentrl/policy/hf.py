"""transformers ``generate`` as a policy: the fallback on machines with no vLLM."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentrl.errors import ConfigError
from agentrl.policy._common import check_prompt, resolve_model_path, room_for
from agentrl.policy.base import Generation, Policy, SamplingParams

__all__ = ["HFConfig", "HFPolicy"]


@dataclass(frozen=True)
class HFConfig:
    """How to load the transformers model."""

    dtype: str = "float32"
    """Weight dtype (``float32``, ``bfloat16``, ``float16``)."""
    device: str = "cpu"
    """Torch device, e.g. ``cpu`` or ``cuda:0``."""

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}")


class HFPolicy(Policy):
    """A transformers causal LM sampling with ``generate``, one request at a time.

    Args:
        model: Checkpoint folder, hub id, or ``tiny``.
        config: Load settings; keyword arguments build one if omitted.

    Raises:
        PolicyNotFoundError: ``model`` does not exist.

    Generation runs in a worker thread (the event loop stays free); requests are served
    one after another, so this backend is for correctness, not throughput. Logprobs are
    ``log_softmax`` of the raw logits in float32 (temperature 1, before top-p), as with
    the vLLM backend. The stop-string and EOS tokens stay in ``token_ids``.
    """

    def __init__(
        self, model: str | os.PathLike[str], config: HFConfig | None = None, **kw: Any
    ) -> None:
        if config is not None and kw:
            raise ConfigError("pass either config=HFConfig(...) or keyword arguments, not both")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config or HFConfig(**kw)
        self.model_path = resolve_model_path(model)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.model = (
            AutoModelForCausalLM.from_pretrained(
                self.model_path, dtype=getattr(torch, self.config.dtype)
            )
            .to(self.config.device)
            .eval()
        )
        text_config = self.model.config.get_text_config()
        self.vocab_size: int = int(text_config.vocab_size)
        positions = getattr(text_config, "max_position_embeddings", None)
        self.max_model_len: int | None = int(positions) if positions else None
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in eos:
            eos.append(self.tokenizer.eos_token_id)
        self._eos: list[int] = eos
        self._lock = threading.Lock()

    async def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> list[Generation]:
        """Sample ``params.n`` completions of ``prompt_ids`` (see :class:`Policy`)."""
        ids = check_prompt(prompt_ids, vocab_size=self.vocab_size, max_model_len=self.max_model_len)
        return await asyncio.to_thread(self._generate, ids, params)

    def _generate(self, ids: list[int], params: SamplingParams) -> list[Generation]:
        import torch

        max_new = room_for(len(ids), params.max_tokens, self.max_model_len)
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new,
            "num_return_sequences": params.n,
            "eos_token_id": self._eos,
            "pad_token_id": self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self._eos[0],
            "return_dict_in_generate": True,
            "output_logits": True,
        }
        if params.temperature == 0:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(
                do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=None
            )
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        device = self.model.device
        with self._lock, torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
            if params.seed is not None:
                torch.manual_seed(params.seed)
            with torch.no_grad():
                out = self.model.generate(input_ids=torch.tensor([ids], device=device), **kwargs)
        new = out.sequences[:, len(ids) :]  # [n, T]
        # raw logits of every step -> logprob of the token taken there
        logits = torch.stack(out.logits, dim=1).float()  # [n, T, V]
        lps = torch.log_softmax(logits, -1).gather(-1, new[..., None])[..., 0]  # [n, T]
        return [
            self._finish(new[i].tolist(), lps[i].tolist(), params, max_new) for i in range(params.n)
        ]

    def _finish(
        self, toks: list[int], lps: list[float], params: SamplingParams, max_new: int
    ) -> Generation:
        """Cut one row at its first EOS or stop string (finished rows are padded)."""
        reason, stop_hit = "length", None
        for k, tok in enumerate(toks):
            if tok in self._eos:
                toks, lps, reason = toks[: k + 1], lps[: k + 1], "stop"
                break
        if params.stop:
            for k in range(1, len(toks) + 1):
                text = self.tokenizer.decode(toks[:k], skip_special_tokens=True)
                stop_hit = next((s for s in params.stop if s in text), None)
                if stop_hit is not None:
                    toks, lps, reason = toks[:k], lps[:k], "stop"
                    break
        text = self.tokenizer.decode(toks, skip_special_tokens=True)
        meta = {"stop_reason": stop_hit} if stop_hit is not None else {}
        return Generation(toks, text, lps, reason, meta)
