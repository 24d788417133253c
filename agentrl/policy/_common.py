"""Helpers shared by the policy backends: model path resolution, prompt checks, a loop thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from agentrl.errors import InvalidPromptError, PolicyNotFoundError, PromptTooLongError

__all__ = ["resolve_model_path", "check_prompt", "room_for", "BackgroundLoop"]

T = TypeVar("T")


def resolve_model_path(model: str | os.PathLike[str]) -> str:
    """Turn a policy's model argument into a path or hub id that the backend can load.

    ``tiny`` means the project's own tiny chat model (built on first use). A string that
    looks like a filesystem path (absolute, ``.``/``~`` prefixed, or an existing entry)
    must be a folder with a ``config.json``. Anything else is tried as a hub id and must
    be resolvable by ``transformers`` (cached or downloadable).

    Raises:
        PolicyNotFoundError: the model cannot be found.
    """
    text = os.fspath(model)
    if text == "tiny":
        from agentrl.models.tiny import default_tiny_model_path

        return str(default_tiny_model_path())
    path = Path(text).expanduser()
    looks_local = text.startswith(("/", ".", "~")) or path.exists()
    if looks_local:
        if not (path / "config.json").is_file():
            what = "does not exist" if not path.exists() else "has no config.json"
            raise PolicyNotFoundError(
                f"model path {text!r} {what}: pass a folder saved with save_pretrained, a hub "
                "id (org/name), or 'tiny' for the built-in tiny model"
            )
        return str(path.resolve())
    from transformers import AutoConfig

    try:  # a hub id: only usable if cached or downloadable
        AutoConfig.from_pretrained(text)
    except (OSError, ValueError) as err:  # ValueError: not a valid repo id
        raise PolicyNotFoundError(
            f"model {text!r} is not a local folder and could not be loaded as a hub id "
            f"(no network or no such repo: {err}); pass a local path or 'tiny'"
        ) from err
    return text


def check_prompt(
    prompt_ids: Sequence[int], *, vocab_size: int | None, max_model_len: int | None
) -> list[int]:
    """Validate a token-id prompt and return it as a plain list of ints.

    Raises:
        InvalidPromptError: empty, not integers, or ids outside ``[0, vocab_size)``.
        PromptTooLongError: the prompt leaves no room for a single new token.
    """
    if isinstance(prompt_ids, str | bytes):
        raise InvalidPromptError(
            "prompt_ids must be a sequence of token ids, not text: tokenize it first"
        )
    ids = list(prompt_ids)
    if not ids:
        raise InvalidPromptError("prompt_ids is empty: a prompt needs at least one token")
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
        bad = next(t for t in ids if not isinstance(t, int) or isinstance(t, bool))
        raise InvalidPromptError(f"prompt_ids must be ints, found {bad!r} ({type(bad).__name__})")
    if vocab_size is not None:
        lo, hi = min(ids), max(ids)
        if lo < 0 or hi >= vocab_size:
            raise InvalidPromptError(
                f"token id {lo if lo < 0 else hi} is outside the vocabulary [0, {vocab_size})"
            )
    if max_model_len is not None and len(ids) >= max_model_len:
        raise PromptTooLongError(
            f"prompt has {len(ids)} tokens but the context window is {max_model_len}: "
            "shorten the conversation or raise max_model_len"
        )
    return ids


def room_for(prompt_len: int, max_tokens: int, max_model_len: int | None) -> int:
    """``max_tokens`` clamped so that prompt + completion fits the context window.

    A completion cut by the window ends with ``finish_reason == "length"``, like one that
    hit ``max_tokens``.
    """
    if max_model_len is None:
        return max_tokens
    return max(1, min(max_tokens, max_model_len - prompt_len))


class BackgroundLoop:
    """An asyncio event loop running forever in a daemon thread.

    Backends whose clients are bound to one event loop (vLLM's ``AsyncLLM``) live on this
    loop, so that callers can use them from any loop, from several ``asyncio.run`` calls
    in a row, or from plain synchronous code.
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; returns a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and block the calling thread until it is done."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("run_sync called from the background loop itself (would deadlock)")
        return self.submit(coro).result()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` from any event loop; cancelling the caller cancels ``coro``."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    def close(self) -> None:
        """Stop the loop and join its thread (pending tasks are cancelled)."""
        if self.loop.is_closed():
            return

        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            self.submit(_cancel_all()).result(timeout=30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=30)
        self.loop.close()
