"""transformers ``generate`` as a policy: the fallback on machines with no vLLM."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Mapping, Sequence
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

    Capabilities: :class:`~agentrl.policy.base.WeightSync` (``update_weights`` copies a
    state dict into the model; ``weight_version`` counts the updates) and
    :class:`~agentrl.policy.base.TokenScorer` (``prompt_logprobs``).
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
        self.weight_version = 0

    async def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> list[Generation]:
        """Sample ``params.n`` completions of ``prompt_ids`` (see :class:`Policy`)."""
        ids = check_prompt(prompt_ids, vocab_size=self.vocab_size, max_model_len=self.max_model_len)
        return await asyncio.to_thread(self._generate, ids, params)

    async def prompt_logprobs(self, ids: Sequence[int]) -> list[float]:
        """Logprob of each token of ``ids`` given the ones before it (``len(ids) - 1`` values)."""
        ids = check_prompt(ids, vocab_size=self.vocab_size, max_model_len=None)
        return await asyncio.to_thread(self._score, ids)

    def _score(self, ids: list[int]) -> list[float]:
        import torch

        from agentrl.models.logprobs import token_logprobs

        with self._lock, torch.no_grad():
            logp = token_logprobs(self.model, torch.tensor([ids], device=self.model.device))
        return logp[0, 1:].tolist()

    def update_weights(
        self, weights: Any, *, verify: bool = True, atol: float | None = None
    ) -> float | None:
        """Copy ``weights`` (a ``torch.nn.Module`` or its ``state_dict()``) into the model.

        Waits for a generation in progress (none mixes two versions), then bumps
        :attr:`weight_version`. With ``verify``, returns the max abs difference between
        the given tensors and the model's after the copy (0.0 unless a dtype cast rounds;
        ``atol`` bounds it, default 0 for float32 and 1e-2 otherwise).

        Raises:
            ConfigError: not a module or state dict, or names/shapes that do not match.
            PolicyError: the check found a difference over ``atol``.
        """
        import torch

        from agentrl.errors import PolicyError

        state = weights.state_dict() if isinstance(weights, torch.nn.Module) else weights
        if not isinstance(state, Mapping):
            raise ConfigError(
                f"weights must be a torch.nn.Module or a state dict, got {type(weights).__name__}"
            )
        own = self.model.state_dict()
        tied = bool(getattr(self.model.config, "tie_word_embeddings", False))
        missing = sorted(own.keys() - state.keys() - ({"lm_head.weight"} if tied else set()))
        extra = sorted(state.keys() - own.keys())
        wrong = [k for k in own.keys() & state.keys() if tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or extra or wrong:
            raise ConfigError(
                f"state dict does not match the model {self.model_path}: missing {missing[:5]}, "
                f"unexpected {extra[:5]}, wrong shape {wrong[:5]} (pass the transformers model "
                "or its unwrapped state_dict())"
            )
        with self._lock, torch.no_grad():
            self.model.load_state_dict(dict(state), strict=False)
            self.weight_version += 1
            if not verify:
                return None
            own = self.model.state_dict()
            diff = max(
                (float((own[k].float() - v.detach().to(own[k].device).float()).abs().max())
                 for k, v in state.items() if own[k].numel()),
                default=0.0,
            )
        tol = atol if atol is not None else (0.0 if self.config.dtype == "float32" else 1e-2)
        if not diff <= tol:
            raise PolicyError(f"weight update check failed: max abs difference {diff:.3g} > {tol:g}")
        return diff

    async def aupdate_weights(
        self, weights: Any, *, verify: bool = True, atol: float | None = None
    ) -> float | None:
        """:meth:`update_weights` in a worker thread."""
        return await asyncio.to_thread(self.update_weights, weights, verify=verify, atol=atol)

    def _generate(self, ids: list[int], params: SamplingParams) -> list[Generation]:
        import torch

        from agentrl.models.logprobs import gather_logprobs

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
            version = self.weight_version
            if params.seed is not None:
                torch.manual_seed(params.seed)
            with torch.no_grad():
                out = self.model.generate(input_ids=torch.tensor([ids], device=device), **kwargs)
        new = out.sequences[:, len(ids) :]  # [n, T]
        # raw logits of every step -> logprob of the token taken there
        lps = gather_logprobs(torch.stack(out.logits, dim=1), new)  # [n, T]
        gens = [
            self._finish(new[i].tolist(), lps[i].tolist(), params, max_new) for i in range(params.n)
        ]
        for gen in gens:
            gen.weight_version = version
        return gens

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
