"""Env instances of one collection: made on demand, reused across episodes, closed at the end.

An env that raised (or broke the env contract) is closed and dropped, never reused: its
state is unknown. Envs implementing :class:`agentrl.env.AsyncEnv` (``areset``/``astep``/
``aclose``) are awaited on the event loop; the others run in the collection's thread
pool, so that a slow tool never holds up the generation of other episodes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agentrl.env import AsyncEnv

__all__ = ["EnvSource", "EnvFailure", "EnvHandle", "EnvPool"]

log = logging.getLogger(__name__)

#: A registered env id (made with :func:`agentrl.registry.make`) or a zero-argument factory.
EnvSource = str | Callable[[], Any]


class EnvFailure(Exception):
    """The env raised or broke its contract; fails one episode (and retires the env)."""


class EnvHandle:
    """One env instance and how to call it (awaited directly, or in the thread pool)."""

    def __init__(self, env: Any, pool: ThreadPoolExecutor) -> None:
        self.env = env
        self.is_async = isinstance(env, AsyncEnv)
        self.pool = pool
        self.episodes = 0
        """Episodes this instance has started (its reuse count)."""
        self.closed = False

    async def _call(self, timing: dict[str, float], what: str, fn: Callable[..., Any],
                    *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            if self.is_async:
                return await fn(*args, **kwargs)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.pool, functools.partial(fn, *args, **kwargs))
        except Exception as exc:  # env code is user code: any failure fails only this episode
            raise EnvFailure(f"{what} raised {type(exc).__name__}: {exc}") from exc
        finally:
            timing["env_s"] += time.perf_counter() - t0

    async def reset(self, timing: dict[str, float], seed: int | None,
                    options: Mapping[str, Any] | None) -> Any:
        self.episodes += 1
        fn = self.env.areset if self.is_async else self.env.reset
        return await self._call(timing, "env.reset", fn, seed=seed, options=options)

    async def step(self, timing: dict[str, float], action: str, turn: int) -> Any:
        fn = self.env.astep if self.is_async else self.env.step
        return await self._call(timing, f"env.step (turn {turn})", fn, action)

    async def close(self) -> None:
        """Close the env once; a failure is logged (no episode is running to fail)."""
        if self.closed:
            return
        self.closed = True
        fn = self.env.aclose if self.is_async else self.env.close
        try:
            await self._call({"env_s": 0.0}, "env.close", fn)
        except EnvFailure as exc:
            log.warning("%s (%s)", exc, type(self.env).__name__)


class EnvPool:
    """Idle env instances of one collection, made on demand and reused (LIFO)."""

    def __init__(self, source: EnvSource, env_kwargs: Mapping[str, Any],
                 pool: ThreadPoolExecutor) -> None:
        self.source = source
        self.env_kwargs = dict(env_kwargs)
        self.pool = pool
        self.idle: list[EnvHandle] = []
        self.live: set[EnvHandle] = set()
        """Every env made and not yet closed (idle or in an episode)."""
        self.made = 0
        """How many env instances were made."""

    def _make(self) -> Any:
        if isinstance(self.source, str):
            from agentrl.registry import make

            return make(self.source, **self.env_kwargs)
        return self.source()

    async def acquire(self, timing: dict[str, float]) -> EnvHandle:
        """An idle env, or a new one (made in the thread pool)."""
        if self.idle:
            return self.idle.pop()
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            env = await loop.run_in_executor(self.pool, self._make)
        except Exception as exc:  # env code is user code: fails only this episode
            raise EnvFailure(f"making the env raised {type(exc).__name__}: {exc}") from exc
        finally:
            timing["env_s"] += time.perf_counter() - t0
        handle = EnvHandle(env, self.pool)
        self.made += 1
        self.live.add(handle)
        return handle

    def release(self, handle: EnvHandle) -> None:
        """Give back an env whose episode ended normally: the next episode resets it."""
        if not handle.closed:
            self.idle.append(handle)

    async def discard(self, handle: EnvHandle) -> None:
        """Close and drop an env that raised."""
        self.live.discard(handle)
        await handle.close()

    async def close(self) -> None:
        """Close every env still open (idle ones and any left by cancelled episodes)."""
        handles, self.idle = list(self.live), []
        self.live.clear()
        await asyncio.gather(*(h.close() for h in handles))
