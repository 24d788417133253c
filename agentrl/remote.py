"""``RemoteEnv``: an env served by ``agentrl serve`` on another host, used like a local one.

>>> env = agentrl.make("agentrl/Calculator-v0", remote="http://10.0.0.5:8765")
>>> env = gymnasium.make("agentrl/Remote-v0", url="http://10.0.0.5:8765",
...                      env_id="agentrl/Calculator-v0")
>>> messages, info = env.reset(seed=0)             # or: await env.areset(seed=0)

It is a ``gymnasium.Env`` with the agentrl env contract (``reset``/``step``/``close``) and
the async protocol (:class:`agentrl.env.AsyncEnv`: ``areset``/``astep``/``aclose``), so
the rollout collector awaits it on its event loop like any async env. One env instance is
one server session; ``reset`` on a live session starts a new episode on the same server-side
env (no reconnect). Failures raise :mod:`agentrl.errors` classes:
:class:`~agentrl.errors.RemoteUnavailableError` (down or too slow, after retries),
:class:`~agentrl.errors.RemoteProtocolError` (not an agentrl server),
:class:`~agentrl.errors.RemoteSessionLostError` (the server restarted or reaped the
session), :class:`~agentrl.errors.RemoteEnvError` (refused: token, capacity, env failure),
and the env's own API errors as their local classes (e.g. ``EpisodeEndedError``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping
from typing import Any, ClassVar, TypeVar

import gymnasium as gym

from agentrl.env import MAX_ACTION_CHARS, Message
from agentrl.errors import (
    ConfigError,
    EpisodeEndedError,
    RemoteEnvError,
    RemoteProtocolError,
    RemoteSessionLostError,
    RemoteUnavailableError,
    ResetNeededError,
)
from agentrl.serve.client import RemoteConfig, SessionClient
from agentrl.spaces import ChatMessages, FreeText

__all__ = ["RemoteEnv"]

T = TypeVar("T")

_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    """The loop (on a daemon thread) that runs the sync methods' requests."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="agentrl-remote", daemon=True).start()
            _LOOP = loop
        return _LOOP


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run_coroutine_threadsafe(coro, _background_loop()).result()


def _messages(body: dict[str, Any], op: str) -> list[Message]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages
    ):
        raise RemoteProtocolError(f"{op}: the reply's messages are malformed: {messages!r:.120}")
    return messages


def _info(body: dict[str, Any], op: str) -> dict[str, Any]:
    info = body.get("info")
    if not isinstance(info, dict):
        raise RemoteProtocolError(f"{op}: the reply's info is not an object: {info!r:.120}")
    return info


class RemoteEnv(gym.Env[list[Message], str]):
    """An env on an ``agentrl serve`` server.

    Args:
        url: the server, ``http://HOST:PORT``.
        env_id: a registered env id the server serves.
        token: bearer token (``agentrl serve --token``).
        transport: ``ws`` (default; a WebSocket per session) or ``http`` (REST).
        timeout_s, connect_timeout_s, retries, backoff_s: see :class:`RemoteConfig`.
        config: a whole :class:`RemoteConfig` instead of the separate settings.
        render_mode: ``ansi`` (``render()`` returns the conversation) or None.
        **env_kwargs: constructor arguments of the env on the server (the server must
            run with ``--allow-env-kwargs``).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 4}
    #: One line shown by ``agentrl envs``.
    description: ClassVar[str] = "An env served by `agentrl serve` (url=..., env_id=...)."

    def __init__(self, url: str, env_id: str, *, token: str | None = None,
                 transport: str = "ws", timeout_s: float = 60.0, connect_timeout_s: float = 10.0,
                 retries: int = 3, backoff_s: float = 0.2, config: RemoteConfig | None = None,
                 render_mode: str | None = None, **env_kwargs: Any) -> None:
        if not isinstance(env_id, str) or not env_id:
            raise ConfigError(f"env_id must be a registered env id, got {env_id!r}")
        if render_mode not in (None, "ansi"):
            raise ConfigError(f"render_mode {render_mode!r} is not supported; use 'ansi' or None")
        self.config = config or RemoteConfig(
            token=token, transport=transport, timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s, retries=retries, backoff_s=backoff_s)
        self.url = url
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs)
        self.render_mode = render_mode
        self.observation_space = ChatMessages()
        self.action_space = FreeText(MAX_ACTION_CHARS)
        self.client = SessionClient(url, self.config)
        self.messages: list[Message] = []
        """The conversation of the current episode (for :meth:`render`)."""
        self._state = "new"

    @property
    def session_id(self) -> str | None:
        """The server session of this env (None before the first reset)."""
        return self.client.session_id

    # -- async protocol ---------------------------------------------------------------------
    async def areset(self, *, seed: int | None = None,
                     options: Mapping[str, Any] | None = None) -> tuple[list[Message], dict[str, Any]]:
        """Start an episode: a new session the first time, then ``reset`` on the same one."""
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ConfigError(f"seed must be an int >= 0 or None, got {seed!r}")
        self._state = "new"
        try:
            if self.client.session_id is None:
                body = await self.client.create(self.env_id, seed, options, self.env_kwargs)
            else:
                body = await self.client.reset(seed, options)
        except RemoteSessionLostError:
            self.client.forget_session()  # the server restarted or reaped it: start afresh
            body = await self.client.create(self.env_id, seed, options, self.env_kwargs)
        messages, info = _messages(body, "reset"), _info(body, "reset")
        self.messages = list(messages)
        self._state = "running"
        return messages, info

    async def astep(self, action: str | Message
                    ) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        """One assistant turn on the server."""
        if self._state == "new":
            raise ResetNeededError("RemoteEnv: call reset() before step()")
        if self._state == "ended":
            raise EpisodeEndedError("RemoteEnv: the episode has ended; call reset() to start "
                                    "a new one")
        try:
            body = await self.client.step(action)
        except RemoteSessionLostError:
            self.client.forget_session()
            self._state = "new"
            raise
        messages, info = _messages(body, "step"), _info(body, "step")
        reward, terminated, truncated = body.get("reward"), body.get("terminated"), body.get("truncated")
        if not isinstance(reward, int | float) or not isinstance(terminated, bool) \
                or not isinstance(truncated, bool):
            raise RemoteProtocolError(f"step: malformed reply {body!r:.160}")
        self.messages.append(action if isinstance(action, dict)
                             else {"role": "assistant", "content": action})
        self.messages.extend(messages)
        if terminated or truncated:
            self._state = "ended"
        return messages, float(reward), terminated, truncated, info

    async def aclose(self) -> None:
        """Close the server session and the connection."""
        await self.client.aclose()
        self._state = "new"

    def task_ids(self) -> list[str] | None:
        """The served env's finite task ids (None: its tasks are generated from the seed)."""
        import httpx

        headers = {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}
        try:
            r = httpx.get(f"{self.client.base}/v1/tasks", params={"env_id": self.env_id},
                          headers=headers, timeout=self.config.timeout_s)
        except httpx.TransportError as exc:
            raise RemoteUnavailableError(f"task_ids: cannot reach {self.url}: {exc}") from exc
        try:
            body = r.json()
        except ValueError as exc:
            raise RemoteProtocolError(f"task_ids: {self.url} answered non-JSON") from exc
        if r.status_code != 200:
            raise RemoteEnvError(f"task_ids: the server refused ({r.status_code}): {body!r:.200}")
        ids = body.get("task_ids") if isinstance(body, dict) else None
        return None if ids is None else list(ids)

    # -- gymnasium (sync) -------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[list[Message], dict[str, Any]]:
        return _run(self.areset(seed=seed, options=options))

    def step(self, action: str | Message) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        return _run(self.astep(action))

    def close(self) -> None:
        if self.client.session_id is not None or self.client._transport is not None:
            _run(self.aclose())

    def render(self) -> str | None:
        return "\n".join(f"[{m.get('role')}] {m.get('content') or ''}" for m in self.messages)

    @property
    def episode_over(self) -> bool:
        return self._state == "ended"

    def __repr__(self) -> str:
        return f"RemoteEnv({self.url!r}, {self.env_id!r}, session={self.session_id})"
