"""Any OpenAI-compatible server as a policy, over httpx.

``generate`` sends token ids to ``/v1/completions`` and asks for the sampled ids back
(``return_token_ids``, a vLLM extension), so rollouts stay token-in-token-out over HTTP.
``chat`` uses ``/v1/chat/completions`` for servers that only speak chat. Transient faults
(connection refused, timeouts, 429, 5xx) are retried with exponential backoff; anything
else fails fast with :class:`~agentrl.errors.PolicyServerError`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from agentrl.errors import ConfigError, PolicyServerError, PromptTooLongError
from agentrl.policy._common import check_prompt
from agentrl.policy.base import Generation, Policy, SamplingParams

__all__ = ["OpenAIConfig", "OpenAIPolicy"]

_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class OpenAIConfig:
    """How to talk to the server."""

    model: str | None = None
    """Model name sent in requests; ``None`` asks ``/v1/models`` for the first one."""
    max_concurrency: int = 64
    """Requests in flight at once (an ``asyncio.Semaphore``)."""
    timeout_s: float = 120.0
    """Per-request timeout in seconds (connect, read, write)."""
    max_retries: int = 3
    """Retries after the first attempt on transient faults."""
    backoff_s: float = 0.5
    """First retry delay; doubles each retry (a server's ``Retry-After`` wins, up to 30 s)."""
    api_key: str | None = None
    """Bearer token; ``None`` reads ``OPENAI_API_KEY`` (servers on loopback need none)."""
    tokenizer: str | None = None
    """Tokenizer folder or hub id; ``None`` tries the served model name as a local path."""

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.max_retries < 0 or self.backoff_s < 0:
            raise ConfigError("max_retries and backoff_s must be >= 0")


class OpenAIPolicy(Policy):
    """A policy served by an OpenAI-compatible HTTP server (e.g. vLLM's ``api_server``).

    Args:
        base_url: Server root, e.g. ``http://127.0.0.1:8000`` (a trailing ``/v1`` is fine).
        config: Client settings; keyword arguments build one if omitted.

    ``tokenizer`` is loaded from ``config.tokenizer`` or, when the served model name is
    a local folder (vLLM names models by their path), from there; else it is ``None``
    and only :meth:`chat` and :meth:`generate` (which needs no tokenizer) work. The HTTP
    client and the semaphore are made per event loop, so the policy can be used from
    several ``asyncio.run`` calls.
    """

    def __init__(self, base_url: str, config: OpenAIConfig | None = None, **kw: Any) -> None:
        if config is not None and kw:
            raise ConfigError("pass either config=OpenAIConfig(...) or keyword arguments, not both")
        self.config = config or OpenAIConfig(**kw)
        url = base_url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = url[:-3] if url.endswith("/v1") else url
        self.model: str | None = self.config.model
        self.max_model_len: int | None = None
        self._models_checked = False
        self.tokenizer: Any = None
        if self.config.tokenizer is not None:
            self.tokenizer = self._load_tokenizer(self.config.tokenizer)
        elif self.model is not None and os.path.isdir(self.model):
            self.tokenizer = self._load_tokenizer(self.model)
        self._clients: dict[
            asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, asyncio.Semaphore]
        ] = {}

    @staticmethod
    def _load_tokenizer(name: str) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name)

    # ------------------------------------------------------------------ http
    def _client(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        for old in [lp for lp in self._clients if lp.is_closed()]:
            del self._clients[old]  # its connections died with their loop
        if loop not in self._clients:
            key = self.config.api_key or os.environ.get("OPENAI_API_KEY")
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            limits = httpx.Limits(max_connections=self.config.max_concurrency)
            client = httpx.AsyncClient(
                base_url=self.base_url,
                headers=headers,
                limits=limits,
                timeout=httpx.Timeout(self.config.timeout_s),
            )
            self._clients[loop] = (client, asyncio.Semaphore(self.config.max_concurrency))
        return self._clients[loop]

    async def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """Send one request with retries; return the decoded JSON body."""
        client, sem = self._client()
        url = self.base_url + path
        last, backoff, server_wait = "", self.config.backoff_s, None
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                await asyncio.sleep(backoff if server_wait is None else server_wait)
                backoff, server_wait = backoff * 2, None
            try:
                async with sem:
                    resp = await client.request(method, path, json=body)
            except httpx.TimeoutException as err:
                last = f"timed out after {self.config.timeout_s:g} s ({type(err).__name__})"
                continue
            except httpx.TransportError as err:  # refused, reset, DNS: the server is down
                last = f"cannot connect ({type(err).__name__}: {err})"
                continue
            if resp.status_code in _RETRY_STATUS:
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                retry_after = resp.headers.get("retry-after", "")
                if retry_after.replace(".", "", 1).isdigit():
                    server_wait = min(float(retry_after), 30.0)
                continue
            if resp.status_code >= 400:
                message = _error_message(resp)
                if "maximum context length" in message:
                    raise PromptTooLongError(f"{url}: {message}")
                hint = (
                    " (the server lacks this endpoint or model)" if resp.status_code == 404 else ""
                )
                raise PolicyServerError(
                    f"{method} {url} failed with HTTP {resp.status_code}{hint}: {message}"
                )
            try:
                return resp.json()
            except ValueError as err:
                raise PolicyServerError(
                    f"{method} {url} answered with something that is not JSON: {resp.text[:200]!r}"
                ) from err
        raise PolicyServerError(
            f"{method} {url} failed after {self.config.max_retries + 1} attempts; last error: {last}. "
            "Is the server running and reachable?"
        )

    async def _ensure_model(self) -> str:
        if not self._models_checked:
            data = await self._request("GET", "/v1/models")
            try:
                cards = {card["id"]: card for card in data["data"]}
                name = self.model if self.model is not None else next(iter(cards))
            except (KeyError, TypeError, StopIteration) as err:
                raise PolicyServerError(
                    f"{self.base_url}/v1/models gave an unexpected answer: {str(data)[:200]}"
                ) from err
            self.model = name
            length = cards.get(name, {}).get("max_model_len")
            self.max_model_len = int(length) if isinstance(length, int) else None
            if self.tokenizer is None and os.path.isdir(name):
                self.tokenizer = self._load_tokenizer(name)
            self._models_checked = True
        return str(self.model)

    # ------------------------------------------------------------------ api
    async def prepare(self) -> None:
        """Ask the server for its model (and load the tokenizer from it when it is a folder)."""
        await self._ensure_model()

    async def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> list[Generation]:
        """Sample ``params.n`` completions of the token ids ``prompt_ids`` via ``/v1/completions``.

        Raises:
            PolicyServerError: server down, too slow, garbage, or no ``token_ids`` support.
            PromptTooLongError: the prompt does not fit the served model's context.
        """
        model = await self._ensure_model()
        vocab = len(self.tokenizer) if self.tokenizer is not None else None
        ids = check_prompt(prompt_ids, vocab_size=vocab, max_model_len=self.max_model_len)
        body = {
            "model": model,
            "prompt": ids,
            "logprobs": 0,
            "return_token_ids": True,
            "include_stop_str_in_output": True,
            **_sampling_body(params),
        }
        data = await self._request("POST", "/v1/completions", body)
        gens = []
        for choice in _choices(data, params.n, self.base_url):
            token_ids = choice.get("token_ids")
            if not isinstance(token_ids, list):
                raise PolicyServerError(
                    f"{self.base_url} does not return token ids (return_token_ids): it cannot be used "
                    "token-in-token-out; use a vLLM server, or chat() for message-level rollouts"
                )
            logprobs = (choice.get("logprobs") or {}).get("token_logprobs")
            gen = _generation(choice, token_ids, logprobs, self.base_url)
            if self.tokenizer is not None:  # same rule as the other backends: text = decode(ids)
                gen.text = self.tokenizer.decode(gen.token_ids, skip_special_tokens=True)
            gens.append(gen)
        return gens

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        params: SamplingParams,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[Generation]:
        """Sample replies to chat ``messages`` via ``/v1/chat/completions`` (the server renders the template).

        ``token_ids`` are filled where the server returns them (vLLM does); otherwise they
        are empty and ``metadata["token_ids"] == "unavailable"``.
        """
        model = await self._ensure_model()
        body: dict[str, Any] = {
            "model": model,
            "messages": list(messages),
            "logprobs": True,
            "return_token_ids": True,
            **_sampling_body(params),
        }
        if tools:
            body["tools"] = list(tools)
        data = await self._request("POST", "/v1/chat/completions", body)
        gens = []
        for choice in _choices(data, params.n, self.base_url):
            message = choice.get("message") or {}
            content = (choice.get("logprobs") or {}).get("content") or []
            logprobs = [entry.get("logprob") for entry in content]
            token_ids = choice.get("token_ids")
            gen = _generation(
                {**choice, "text": message.get("content") or ""},
                token_ids if isinstance(token_ids, list) else [],
                logprobs,
                self.base_url,
            )
            if not isinstance(token_ids, list):
                gen.metadata["token_ids"] = "unavailable"
            if message.get("tool_calls"):
                gen.metadata["tool_calls"] = message["tool_calls"]
            gens.append(gen)
        return gens

    async def aclose(self) -> None:
        """Close the HTTP client of the running loop (others are dropped)."""
        loop = asyncio.get_running_loop()
        entry = self._clients.pop(loop, None)
        self._clients.clear()
        if entry is not None:
            await entry[0].aclose()

    def close(self) -> None:
        """Forget all clients (their connections close with their loops)."""
        self._clients.clear()


def _sampling_body(params: SamplingParams) -> dict[str, Any]:
    body: dict[str, Any] = {
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "n": params.n,
    }
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    return body


def _error_message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:300]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])
        if "message" in data:
            return str(data["message"])
    return str(data)[:300]


def _choices(data: Any, n: int, where: str) -> list[dict[str, Any]]:
    choices = data.get("choices") if isinstance(data, dict) else None
    if (
        not isinstance(choices, list)
        or len(choices) != n
        or not all(isinstance(c, dict) for c in choices)
    ):
        raise PolicyServerError(f"{where} answered without {n} choice(s): {str(data)[:200]}")
    return sorted(choices, key=lambda c: c.get("index", 0))


def _generation(
    choice: Mapping[str, Any], token_ids: list[Any], logprobs: Any, where: str
) -> Generation:
    if not all(isinstance(t, int) for t in token_ids):
        raise PolicyServerError(f"{where} returned token ids that are not ints: {token_ids[:5]}")
    if not isinstance(logprobs, list) or (token_ids and len(logprobs) != len(token_ids)):
        raise PolicyServerError(f"{where} returned no per-token logprobs (or the wrong number)")
    if not all(isinstance(x, int | float) for x in logprobs):
        raise PolicyServerError(f"{where} returned logprobs that are not numbers")
    reason = choice.get("finish_reason")
    if reason not in ("stop", "length", "tool_calls"):
        raise PolicyServerError(f"{where} returned finish_reason={reason!r}")
    meta = {"stop_reason": choice["stop_reason"]} if choice.get("stop_reason") is not None else {}
    text = choice.get("text")
    if not isinstance(text, str):
        raise PolicyServerError(f"{where} returned a choice without text")
    return Generation(
        list(token_ids),
        text,
        [float(x) for x in logprobs],
        "stop" if reason == "tool_calls" else reason,
        meta,
    )
