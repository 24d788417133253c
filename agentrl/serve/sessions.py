"""Sessions of ``agentrl serve``: one env instance each, sequence-checked, reaped when idle.

:class:`SessionManager` holds the server's state and does all the work of an operation;
the ASGI app (:mod:`agentrl.serve.app`) only decodes requests and encodes replies, so REST
and WebSocket share one code path. Replies are JSON bytes; the last reply of each session
is kept so that a retried operation (same ``seq``) gets it back without being applied again.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import gc
import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agentrl.env import AsyncEnv
from agentrl.errors import (
    AgentRLError,
    ConfigError,
    EnvError,
    EnvNotFoundError,
    InvalidActionError,
)
from agentrl.serve.config import ServerConfig
from agentrl.serve.metrics import Metrics
from agentrl.serve.protocol import ERROR_CODES, CreateSession, ResetSession, StepSession

__all__ = ["ServerConfig", "ApiError", "Reply", "Session", "SessionManager", "dumps"]

log = logging.getLogger(__name__)

try:  # glibc: malloc_trim gives free heap memory back to the OS
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _LIBC.malloc_trim  # noqa: B018  (absent outside glibc)
except (OSError, AttributeError):
    _LIBC = None

#: (HTTP status, JSON body bytes, extra headers)
Reply = tuple[int, bytes, dict[str, str]]



class ApiError(AgentRLError):
    """An error reply (never leaves the server: the app turns it into a response)."""

    def __init__(self, code: str, message: str, *, type_: str | None = None,
                 expected_seq: int | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = ERROR_CODES[code]
        self.code = code
        self.type = type_
        self.expected_seq = expected_seq
        self.headers = dict(headers or {})

    def reply(self) -> Reply:
        error: dict[str, Any] = {"code": self.code, "message": str(self)}
        if self.type is not None:
            error["type"] = self.type
        if self.expected_seq is not None:
            error["expected_seq"] = self.expected_seq
        return self.status, json.dumps({"error": error}).encode(), self.headers


def _safe_info(info: Any) -> dict[str, Any]:
    """The JSON-serializable entries of ``info`` (others dropped, as the collector does)."""
    if not isinstance(info, dict):
        return {}
    out = {}
    for key, value in info.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            continue
        out[str(key)] = value
    return out


def dumps(body: dict[str, Any]) -> bytes:
    """JSON bytes of a reply body; non-JSON ``info`` entries are dropped."""
    try:
        return json.dumps(body, allow_nan=False).encode()
    except (TypeError, ValueError):
        body = {**body, "info": _safe_info(body.get("info"))}
        if "reward" in body and not math.isfinite(body["reward"]):
            body["reward"] = 0.0
        return json.dumps(body, allow_nan=False, default=str).encode()


class Session:
    """One env instance and the last operation applied to it."""

    __slots__ = ("id", "env_id", "env", "is_async", "seq", "reply", "lock", "created",
                 "last_used", "busy", "closed")

    def __init__(self, sid: str, env_id: str) -> None:
        self.id = sid
        self.env_id = env_id
        self.env: Any = None
        self.is_async = False
        self.seq = -1  # last applied operation; its reply is ``reply``
        self.reply: Reply | None = None
        self.lock = asyncio.Lock()
        self.created = self.last_used = time.monotonic()
        self.busy = 0
        self.closed = False


def _env_error(exc: AgentRLError) -> ApiError:
    """The reply for an error the env raised on purpose (its API's misuse or bad args)."""
    name = type(exc).__name__
    if isinstance(exc, InvalidActionError):
        return ApiError("invalid_action", str(exc), type_=name)
    if isinstance(exc, ConfigError):
        return ApiError("bad_request", str(exc), type_=name)
    if isinstance(exc, EnvError):
        return ApiError("env_misuse", str(exc), type_=name)
    return ApiError("env_failed", str(exc), type_=name)  # e.g. SandboxError: infrastructure


class SessionManager:
    """All sessions of a server, their limits, the idle reaper, and the metrics."""

    def __init__(self, config: ServerConfig,
                 make_env: Callable[..., Any] | None = None) -> None:
        self.config = config
        self.sessions: dict[str, Session] = {}
        self._make_env = make_env or _default_make
        self._executor = (ThreadPoolExecutor(config.env_threads, thread_name_prefix="serve-env")
                          if config.env_threads else None)
        self._reaper: asyncio.Task[None] | None = None
        self.started = time.monotonic()
        self.metrics = Metrics()
        self._task_ids: dict[str, list[str] | None] = {}
        self._trimmed = 0.0
        self._trim_pending = False  # a second trim is due at the reaper's next pass

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Start the idle reaper on the running loop."""
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def shutdown(self) -> None:
        """Stop the reaper and close every session's env."""
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
            self._reaper = None
        await asyncio.gather(*(self._drop(s, "shutdown") for s in list(self.sessions.values())))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _reap_forever(self) -> None:
        interval = min(5.0, max(0.05, self.config.idle_timeout_s / 4))
        while True:
            await asyncio.sleep(interval)
            await self.reap()
            if self._trim_pending:
                self._trim()

    async def reap(self) -> int:
        """Close sessions idle longer than the timeout; returns how many."""
        limit = time.monotonic() - self.config.idle_timeout_s
        stale = [s for s in self.sessions.values() if not s.busy and s.last_used < limit]
        await asyncio.gather(*(self._drop(s, "idle") for s in stale))
        return len(stale)

    # -- helpers ------------------------------------------------------------------------
    def count(self, name: str, label: str) -> None:
        """Add one to counter ``name`` with ``label``."""
        self.metrics.count(name, label)

    @property
    def counters(self) -> dict[tuple[str, str], int]:
        """``(counter name, label) -> count`` (see :mod:`agentrl.serve.metrics`)."""
        return self.metrics.counters

    def metrics_text(self) -> str:
        """The Prometheus text page (``GET /metrics``)."""
        return self.metrics.text({"agentrl_serve_sessions": len(self.sessions),
                                  "agentrl_serve_max_sessions": self.config.max_sessions})

    async def _call(self, session: Session, fn: Callable[..., Any], *args: Any,
                    **kwargs: Any) -> Any:
        if session.is_async:
            return await fn(*args, **kwargs)
        if self._executor is None:
            return fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def _drop(self, session: Session, reason: str) -> None:
        if session.closed:
            return
        session.closed = True
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
            if not self.sessions:  # the last one: give freed memory back once it is closed
                asyncio.get_running_loop().call_soon(self._trim)
        self.count("agentrl_serve_sessions_closed_total", reason)
        if session.env is None:
            return
        try:
            await self._call(session, session.env.aclose if session.is_async else session.env.close)
        except Exception as exc:  # env code is user code; the session is gone either way
            log.warning("closing session %s (%s) raised %s: %s", session.id, session.env_id,
                        type(exc).__name__, exc)

    def _trim(self) -> None:
        """With no session open: collect garbage and return free heap pages to the OS
        (glibc ``malloc_trim``), so the server's RSS goes back near its baseline. Runs when
        the last session closes and again at the reaper's next pass (once connections
        are torn down too)."""
        if self.sessions or time.monotonic() - self._trimmed < 1.0:
            return
        self._trimmed = time.monotonic()
        self._trim_pending = not self._trim_pending
        gc.collect()
        if _LIBC is not None:
            _LIBC.malloc_trim(0)

    def retry_after(self) -> int:
        """Seconds until a session slot is likely free (the oldest idle one is reaped)."""
        now = time.monotonic()
        idle = [now - s.last_used for s in self.sessions.values() if not s.busy]
        wait = self.config.idle_timeout_s - max(idle) if idle else 1.0
        return max(1, min(60, math.ceil(wait)))

    def get(self, sid: str) -> Session:
        session = self.sessions.get(sid)
        if session is None:
            raise ApiError("unknown_session",
                           f"no session {sid!r} (closed, reaped after "
                           f"{self.config.idle_timeout_s:g} s idle, or the server restarted)")
        return session

    # -- operations ---------------------------------------------------------------------
    async def create(self, req: CreateSession) -> Reply:
        """Make a session's env and reset it (operation 0); a retried create (same id)
        returns the stored reply."""
        if req.env_id not in self.config.env_ids:
            raise ApiError("unknown_env", f"env {req.env_id!r} is not served here; served: "
                           f"{', '.join(self.config.env_ids)}")
        if req.env_kwargs and not self.config.allow_env_kwargs:
            raise ApiError("env_kwargs_not_allowed", "this server does not accept env_kwargs "
                           "(start it with --allow-env-kwargs)")
        if req.session_id is not None and req.session_id in self.sessions:
            session = self.sessions[req.session_id]
            async with session.lock:
                if session.env_id != req.env_id or session.seq != 0 or session.reply is None:
                    raise ApiError("session_conflict",
                                   f"session {req.session_id!r} exists and has moved on")
                session.last_used = time.monotonic()
                return session.reply
        if len(self.sessions) >= self.config.max_sessions:
            self.count("agentrl_serve_rejected_total", "too_many_sessions")
            raise ApiError("too_many_sessions",
                           f"the server holds its maximum of {self.config.max_sessions} sessions",
                           headers={"Retry-After": str(self.retry_after())})
        session = Session(req.session_id or secrets.token_urlsafe(16), req.env_id)
        self.sessions[session.id] = session  # holds the slot while the env is made
        session.busy += 1
        try:
            async with session.lock:
                try:
                    session.env = await self._make(req.env_id, req.env_kwargs or {})
                except ApiError:
                    raise
                except EnvNotFoundError as exc:
                    raise ApiError("unknown_env", str(exc)) from exc
                except AgentRLError as exc:
                    raise _env_error(exc) from exc
                session.is_async = isinstance(session.env, AsyncEnv)
                reply = await self._apply_reset(session, 0, req.seed, req.options, status=201)
        except ApiError:
            await self._drop(session, "error")
            raise
        finally:
            session.busy -= 1
        self.count("agentrl_serve_sessions_created_total", req.env_id)
        return reply

    async def _make(self, env_id: str, kwargs: dict[str, Any]) -> Any:
        try:
            if self._executor is None:
                return self._make_env(env_id, **kwargs)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._executor, functools.partial(self._make_env, env_id, **kwargs))
        except AgentRLError:
            raise
        except (TypeError, ValueError) as exc:  # bad constructor arguments
            raise ConfigError(f"making {env_id} raised {type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # env code is user code
            raise ApiError("env_failed", f"making {env_id} raised {type(exc).__name__}: "
                           f"{exc}", type_=type(exc).__name__) from exc

    async def task_ids(self, env_id: str) -> list[str] | None:
        """The env's ``task_ids()`` (asked once per env id, on a probe instance)."""
        if env_id not in self.config.env_ids:
            raise ApiError("unknown_env", f"env {env_id!r} is not served here")
        if env_id not in self._task_ids:
            env = await self._make(env_id, {})
            try:
                method = getattr(getattr(env, "unwrapped", env), "task_ids", None)
                ids = method() if method is not None else None
            except Exception as exc:  # env code is user code
                raise ApiError("env_failed", f"{env_id}.task_ids() raised "
                               f"{type(exc).__name__}: {exc}") from exc
            finally:
                env.close()
            self._task_ids[env_id] = None if ids is None else [str(i) for i in ids]
        return self._task_ids[env_id]

    async def reset(self, sid: str, req: ResetSession) -> Reply:
        return await self._op(sid, req.seq, "reset", req)

    async def step(self, sid: str, req: StepSession) -> Reply:
        return await self._op(sid, req.seq, "step", req)

    async def close(self, sid: str) -> None:
        session = self.get(sid)
        async with session.lock:
            await self._drop(session, "client")

    async def _op(self, sid: str, seq: int, op: str, req: Any) -> Reply:
        session = self.get(sid)
        session.busy += 1
        try:
            async with session.lock:
                if session.closed:
                    raise self._gone(sid)
                session.last_used = time.monotonic()
                if seq == session.seq and session.reply is not None:
                    self.count("agentrl_serve_retries_total", op)
                    return session.reply
                if seq != session.seq + 1:
                    raise ApiError("out_of_order", f"seq {seq} is out of order: the next "
                                   f"operation of session {sid} is {session.seq + 1}",
                                   expected_seq=session.seq + 1)
                if op == "reset":
                    return await self._apply_reset(session, seq, req.seed, req.options)
                return await self._apply_step(session, seq, req.action)
        finally:
            session.busy -= 1
            session.last_used = time.monotonic()

    def _gone(self, sid: str) -> ApiError:
        return ApiError("unknown_session", f"session {sid!r} was closed")

    async def _run_env(self, session: Session, seq: int, call: Callable[[], Any]) -> Any:
        """Run an env call; an env error is stored as the reply of ``seq``, anything
        unexpected closes the session."""
        try:
            return await call()
        except EnvNotFoundError as exc:
            raise ApiError("unknown_env", str(exc)) from exc
        except (EnvError, ConfigError) as exc:  # the env's own API errors: reply, keep going
            error = _env_error(exc)
            session.seq, session.reply = seq, error.reply()
            raise error from exc
        except Exception as exc:  # env code is user code: this session's state is unknown
            log.warning("session %s (%s): env raised %s: %s", session.id, session.env_id,
                        type(exc).__name__, exc)
            await self._drop(session, "error")
            raise ApiError("env_failed", f"the env raised {type(exc).__name__}: {exc}; the "
                           "session is closed", type_=type(exc).__name__) from exc

    async def _apply_reset(self, session: Session, seq: int, seed: int | None,
                           options: dict[str, Any] | None, status: int = 200) -> Reply:
        env = session.env
        fn = env.areset if session.is_async else env.reset

        async def call() -> Any:
            messages, info = await self._call(session, fn, seed=seed, options=options)
            return messages, info

        t0 = time.perf_counter()
        messages, info = await self._run_env(session, seq, call)
        self.metrics.observe("reset", time.perf_counter() - t0)
        body = {"session_id": session.id, "seq": seq, "messages": messages, "info": info}
        session.seq, session.reply = seq, (status, dumps(body), {})
        return session.reply

    async def _apply_step(self, session: Session, seq: int, action: Any) -> Reply:
        env = session.env
        fn = env.astep if session.is_async else env.step
        if not isinstance(action, str):
            action = action.model_dump(exclude_none=True)

        async def call() -> Any:
            messages, reward, terminated, truncated, info = await self._call(session, fn, action)
            return messages, float(reward), terminated, truncated, info

        t0 = time.perf_counter()
        messages, reward, terminated, truncated, info = await self._run_env(session, seq, call)
        self.metrics.observe("step", time.perf_counter() - t0)
        body = {"session_id": session.id, "seq": seq, "messages": messages,
                "reward": reward, "terminated": bool(terminated),
                "truncated": bool(truncated), "info": info}
        session.seq, session.reply = seq, (200, dumps(body), {})
        return session.reply

def _default_make(env_id: str, **kwargs: Any) -> Any:
    from agentrl.registry import make

    return make(env_id, **kwargs)
