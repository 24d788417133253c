"""A vLLM OpenAI-compatible server on this machine as a policy that takes weight updates.

vLLM 0.32's server has no weight-reload endpoint in normal mode. Started with
``VLLM_SERVER_DEV_MODE=1`` it adds development routes, of which this backend uses:
``POST /pause?mode=wait`` (finish requests in flight, hold new ones, clear the prefix
cache), ``POST /collective_rpc`` (call a method on every worker; here
``reload_weights(weights_path=FOLDER)``), ``POST /resume`` and
``POST /update_weight_version``. The weights travel as a safetensors file in a folder
both processes can read (``/dev/shm`` by default), so the server must run on this machine
(or share ``sync_dir`` with it). vLLM's weight-transfer engines (``/init_weight_transfer_engine``,
``/update_weights``: NCCL, CUDA IPC, ...) need GPUs and are not used. See docs/policy.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from agentrl.errors import CapabilityError, ConfigError, PolicyError, PolicyServerError
from agentrl.policy._common import check_prompt
from agentrl.policy._weights import PROBE_TEXT, WeightFiles, default_atol
from agentrl.policy.base import Generation, SamplingParams
from agentrl.policy.openai_http import OpenAIConfig, OpenAIPolicy, _error_message

__all__ = ["DEV_MODE_HINT", "VLLMServerConfig", "VLLMServerPolicy"]

#: How to get a server that allows weight reloads (part of the error when it does not).
DEV_MODE_HINT = (
    "start the vLLM server with VLLM_SERVER_DEV_MODE=1 in its environment (e.g. "
    "`VLLM_SERVER_DEV_MODE=1 vllm serve MODEL`), on this machine: its /pause, "
    "/collective_rpc and /resume routes reload weights from a shared folder"
)


@dataclass(frozen=True)
class VLLMServerConfig(OpenAIConfig):
    """How to talk to the server, and how to push weights to it."""

    checkpoint: str | None = None
    """Local checkpoint folder the server was started from (weight names and shapes are
    checked against it; it gives the config for the sync check); ``None``: ``tokenizer``,
    else the served model name (vLLM names a model by its path)."""
    sync_dir: str | None = None
    """Folder for the weights file, readable by the server; ``None``: a new one in ``/dev/shm``."""
    sync_timeout_s: float = 600.0
    """Timeout of the pause and reload calls in seconds (large models load slowly)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sync_timeout_s <= 0:
            raise ConfigError(f"sync_timeout_s must be > 0, got {self.sync_timeout_s}")


class VLLMServerPolicy(OpenAIPolicy):
    """An :class:`OpenAIPolicy` on a vLLM server in dev mode, with weight sync.

    Args:
        base_url: Server root, e.g. ``http://127.0.0.1:8000``.
        config: Settings; keyword arguments build one if omitted.

    Capabilities: :class:`~agentrl.policy.base.WeightSync` (``weight_version`` is 0 at
    start and +1 per update the server loaded; the server's own version, ``GET
    /weight_info``, is set to the same number) and
    :class:`~agentrl.policy.base.TokenScorer` (``prompt_logprobs``, a vLLM extension).
    Completions from this object record the version they ran on: an update waits for
    them to finish and holds new ones back; the server's ``/pause?mode=wait`` does the
    same for other clients' requests. :meth:`prepare` checks that the server has the dev
    routes (:class:`~agentrl.errors.CapabilityError` if not).
    """

    config: VLLMServerConfig

    def __init__(self, base_url: str, config: VLLMServerConfig | None = None, **kw: Any) -> None:
        if config is not None and kw:
            raise ConfigError(
                "pass either config=VLLMServerConfig(...) or keyword arguments, not both"
            )
        super().__init__(base_url, config or VLLMServerConfig(**kw))
        self.weight_version = 0
        self._files: WeightFiles | None = None
        self._lock = threading.Lock()  # requests may come from several loops and threads
        self._inflight = 0
        self._syncing = False
        self._dev_checked = False

    # ------------------------------------------------------------------ requests
    @contextlib.asynccontextmanager
    async def _on_weights(self) -> AsyncIterator[int]:
        """Hold a request back while an update runs; yields the version it runs on."""
        while True:
            with self._lock:
                if not self._syncing:
                    self._inflight += 1
                    version = self.weight_version
                    break
            await asyncio.sleep(0.005)
        try:
            yield version
        finally:
            with self._lock:
                self._inflight -= 1

    async def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> list[Generation]:
        """As :meth:`OpenAIPolicy.generate`; each generation records its weight version."""
        async with self._on_weights() as version:
            gens = await super().generate(prompt_ids, params)
        for gen in gens:
            gen.weight_version = version
        return gens

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        params: SamplingParams,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[Generation]:
        """As :meth:`OpenAIPolicy.chat`; each generation records its weight version."""
        async with self._on_weights() as version:
            gens = await super().chat(messages, params, tools)
        for gen in gens:
            gen.weight_version = version
        return gens

    async def prompt_logprobs(self, ids: Sequence[int]) -> list[float]:
        """Logprob of each token of ``ids`` given the ones before it (``len(ids) - 1`` values)."""
        model = await self._ensure_model()
        vocab = len(self.tokenizer) if self.tokenizer is not None else None
        ids = check_prompt(ids, vocab_size=vocab, max_model_len=self.max_model_len)
        body = {"model": model, "prompt": ids, "max_tokens": 1, "temperature": 0.0,
                "prompt_logprobs": 0}  # fmt: skip
        async with self._on_weights():
            data = await self._request("POST", "/v1/completions", body)
        try:
            entries = data["choices"][0]["prompt_logprobs"]
            return [float(entries[t][str(tok)]["logprob"]) for t, tok in enumerate(ids) if t]
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise PolicyServerError(
                f"{self.base_url} returned no usable prompt_logprobs (a vLLM extension): "
                f"{str(data)[:200]}"
            ) from err

    async def prepare(self) -> None:
        """Ask the server for its model, and check that it allows weight reloads."""
        await super().prepare()
        await self._check_dev_mode()

    # ------------------------------------------------------------------ dev routes
    async def _dev(
        self, path: str, body: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None,
        method: str = "POST",
    ) -> Any:
        """One call to a dev-mode route, without retries (404: the server is not in dev mode)."""
        client, _ = self._client()
        try:
            resp = await client.request(method, path, json=body, params=params,
                                        timeout=self.config.sync_timeout_s)
        except httpx.TransportError as err:  # timeouts included
            raise PolicyServerError(
                f"{method} {self.base_url}{path} failed ({type(err).__name__}: {err})"
            ) from err
        if resp.status_code == 404:
            raise CapabilityError(
                f"{self.base_url} has no {path} route, so it cannot take weight updates; "
                + DEV_MODE_HINT
            )
        if resp.status_code >= 400:
            raise PolicyServerError(
                f"{method} {self.base_url}{path} failed with HTTP {resp.status_code}: "
                f"{_error_message(resp)}"
            )
        try:
            return resp.json() if resp.content else None
        except ValueError:
            return resp.text

    async def _check_dev_mode(self) -> None:
        if not self._dev_checked:
            await self._dev("/is_paused", method="GET")
            self._dev_checked = True

    async def server_weight_version(self) -> str:
        """The server's own weight version label (``GET /weight_info``)."""
        data = await self._dev("/weight_info", method="GET")
        return str((data or {}).get("weight_version"))

    async def _weight_files(self) -> WeightFiles:
        if self._files is None:
            await self._ensure_model()
            source = self.config.checkpoint or self.config.tokenizer or str(self.model)
            from transformers import AutoConfig

            try:
                hf_config = AutoConfig.from_pretrained(source)
            except (OSError, ValueError) as err:
                raise ConfigError(
                    f"cannot load the checkpoint config from {source!r} ({err}); pass "
                    "checkpoint=FOLDER, the folder the server was started from"
                ) from err
            self._files = WeightFiles(source, hf_config, self.config.sync_dir)
        return self._files

    # ------------------------------------------------------------------ weights
    def update_weights(
        self, weights: Any, *, verify: bool = True, atol: float | None = None
    ) -> float | None:
        """Load new weights into the server (blocking; see :meth:`aupdate_weights`).

        Raises:
            PolicyError: called from a running event loop (use ``aupdate_weights`` there).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise PolicyError("update_weights() blocks; in async code await aupdate_weights()")

        async def run() -> float | None:
            try:
                return await self.aupdate_weights(weights, verify=verify, atol=atol)
            finally:  # this loop ends here: close its client (other loops keep theirs)
                entry = self._clients.pop(asyncio.get_running_loop(), None)
                if entry is not None:
                    await entry[0].aclose()

        return asyncio.run(run())

    async def aupdate_weights(
        self, weights: Any, *, verify: bool = True, atol: float | None = None
    ) -> float | None:
        """Load new weights into the server, in place.

        Writes them to ``sync_dir``, waits for this object's requests in flight, pauses
        the server (its requests in flight finish on the old weights, its prefix cache is
        cleared), reloads, resumes; then :attr:`weight_version` goes up by one and the
        server's version label is set to it. With ``verify`` the server's prompt logprobs
        of a probe text are compared with a forward pass of the new weights.

        Args:
            weights: A ``torch.nn.Module`` (a transformers causal LM) or its ``state_dict()``.
            verify: Run the logprob check (see :meth:`VLLMPolicy.aupdate_weights`).
            atol: Allowed max abs logprob difference; default 1e-3 for float32 weights,
                5e-2 otherwise (pass 5e-2 for a float32 learner and a bfloat16 server).

        Returns:
            The check's max abs logprob difference, or ``None`` if not verified.

        Raises:
            CapabilityError: the server is not in dev mode. ConfigError: the weights do not
            match the checkpoint. PolicyServerError: the server failed to pause, reload or
            resume. PolicyError: the check failed.
        """
        files = await self._weight_files()
        await self._check_dev_mode()
        module, tensors = files.split(weights)
        folder = await asyncio.to_thread(files.write, tensors)
        with self._lock:
            if self._syncing:
                raise PolicyError("another weight update of this policy is running")
            self._syncing = True
        try:
            while True:
                with self._lock:
                    if self._inflight == 0:
                        break
                await asyncio.sleep(0.005)
            try:
                await self._dev("/pause", params={"mode": "wait", "clear_cache": "true"})
                await self._reload(str(folder))
            finally:
                await self._dev("/resume")
            with self._lock:
                self.weight_version += 1
            await self._dev("/update_weight_version", {"new_version": str(self.weight_version)})
        finally:
            with self._lock:
                self._syncing = False
        if not verify:
            return None
        return await self._verify(files, module, tensors, atol)

    async def _reload(self, folder: str) -> None:
        body = {"method": "reload_weights", "kwargs": {"weights_path": folder},
                "timeout": self.config.sync_timeout_s}  # fmt: skip
        try:
            await self._dev("/collective_rpc", body)
        except PolicyServerError as err:
            raise PolicyServerError(
                f"{err}; the server must run on this machine and be able to read {folder} "
                "(set sync_dir to a folder it can read)"
            ) from err

    async def _verify(
        self, files: WeightFiles, module: Any, tensors: Mapping[str, Any], atol: float | None
    ) -> float:
        import torch

        if self.tokenizer is None:
            raise PolicyError("the sync check needs a tokenizer: pass tokenizer=FOLDER")
        ids = self.tokenizer.encode(PROBE_TEXT, add_special_tokens=False)
        served = torch.tensor(await self.prompt_logprobs(ids), dtype=torch.float64)
        ref = await asyncio.to_thread(files.reference_logprobs, module, tensors, ids)
        diff = float((ref - served).abs().max())
        fp32 = all(getattr(t, "dtype", None) == torch.float32 for t in tensors.values())
        tol = atol if atol is not None else default_atol(fp32)
        return files.check(diff, tol, f"server {self.base_url}")

    def close(self) -> None:
        """Forget all clients and remove the weights file (or the scratch folder made for it)."""
        super().close()
        if self._files is not None:
            self._files.cleanup()
