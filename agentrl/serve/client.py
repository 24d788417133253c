"""Client transports of the ``agentrl serve`` protocol, and the retry/error policy.

:class:`SessionClient` runs one session's operations with sequence numbers, retries
(connection failures and timeouts are retried with the *same* ``seq``, so the server
returns the stored reply instead of applying a step twice) and clear errors. Two
transports:

* ``ws`` (default): one WebSocket per session (``websockets`` library); after a dropped
  connection the client reconnects and re-attaches to its session. Measured the faster
  of the two (``agentrl bench serve --transport``), see docs/serve.md.
* ``http``: one REST request per operation on a pooled keep-alive ``httpx`` client (one
  pool per event loop and server); for proxies that do not pass WebSockets.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus, WebSocketException

from agentrl import errors
from agentrl.errors import (
    ConfigError,
    RemoteEnvError,
    RemoteProtocolError,
    RemoteSessionLostError,
    RemoteUnavailableError,
)

__all__ = ["RemoteConfig", "SessionClient", "TRANSPORTS"]

TRANSPORTS = ("ws", "http")

# Env errors the server reports by class name; re-raised as the same class here, so that a
# remote env fails like a local one (step after the end, an unknown task id, ...).
_LOCAL_ERRORS = {name: getattr(errors, name) for name in (
    "ResetNeededError", "EpisodeEndedError", "InvalidActionError", "TaskNotFoundError",
    "ConfigError", "EnvNotFoundError", "ToolFormatError")}


@dataclass(frozen=True)
class RemoteConfig:
    """How a :class:`~agentrl.remote.RemoteEnv` talks to its server."""

    token: str | None = None
    """Bearer token (``agentrl serve --token``); None: none sent."""
    transport: str = "ws"
    """``ws`` (a WebSocket per session) or ``http`` (a REST request per operation)."""
    timeout_s: float = 60.0
    """Longest wait for one operation's reply before it is retried."""
    connect_timeout_s: float = 10.0
    """Longest wait for a connection."""
    retries: int = 3
    """Extra attempts after a connection failure or timeout (same ``seq``: never applied twice)."""
    backoff_s: float = 0.2
    """Delay before the first retry; doubles each time."""
    max_message_bytes: int = 64 * 1024 * 1024
    """Largest reply accepted."""

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"transport must be one of {TRANSPORTS}, got {self.transport!r}")
        for name in ("timeout_s", "connect_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigError(f"retries must be an int >= 0, got {self.retries!r}")
        if self.backoff_s < 0:
            raise ConfigError(f"backoff_s must be >= 0, got {self.backoff_s}")


class _Retry(Exception):
    """A failure worth retrying (connection refused/dropped, timeout); internal."""


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"the server url must look like http://HOST:PORT, got {url!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _decode(raw: bytes | str, where: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RemoteProtocolError(f"{where}: the server answered something that is not JSON "
                                  f"({bytes(raw[:80]) if isinstance(raw, bytes) else raw[:80]!r}); "
                                  "is it an agentrl serve server?") from exc


class _WsTransport:
    """One WebSocket, bound to one event loop."""

    def __init__(self, base: str, config: RemoteConfig) -> None:
        parts = urlsplit(base)
        scheme = "wss" if parts.scheme == "https" else "ws"
        self.url = urlunsplit((scheme, parts.netloc, parts.path + "/v1/ws", "", ""))
        self.config = config
        self.ws: Any = None

    async def connect(self, attach: str | None) -> None:
        headers = {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}
        try:
            self.ws = await ws_connect(
                self.url, additional_headers=headers, compression=None,
                max_size=self.config.max_message_bytes, open_timeout=self.config.connect_timeout_s,
                ping_interval=None, close_timeout=1.0)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 401:
                raise RemoteEnvError(f"{self.url}: unauthorized (401): wrong or missing token") \
                    from exc
            raise RemoteProtocolError(f"{self.url}: WebSocket refused with HTTP {status}; is it "
                                      "an agentrl serve server?") from exc
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise _Retry(f"cannot connect to {self.url}: {type(exc).__name__}: {exc}") from exc
        if attach is not None:
            status, body = await self.call({"op": "attach", "session_id": attach})
            if status != 200:
                raise _status_error(status, body, "attach")

    async def call(self, frame: dict[str, Any]) -> tuple[int, Any]:
        try:
            async with asyncio.timeout(self.config.timeout_s):
                await self.ws.send(json.dumps(frame))
                raw = await self.ws.recv()
        except TimeoutError as exc:
            raise _Retry(f"no reply within {self.config.timeout_s:g} s") from exc
        except (OSError, WebSocketException) as exc:
            raise _Retry(f"connection lost: {type(exc).__name__}: {exc}") from exc
        reply = _decode(raw, self.url)
        if not isinstance(reply, dict) or not isinstance(reply.get("status"), int):
            raise RemoteProtocolError(f"{self.url}: malformed reply frame {raw[:120]!r}")
        body = reply.get("body")
        if "retry_after" in reply and isinstance(body, dict):
            body = {**body, "retry_after": reply["retry_after"]}
        return reply["status"], body

    async def close(self) -> None:
        if self.ws is not None:
            ws, self.ws = self.ws, None
            await ws.close()


# One pooled httpx client per (event loop, server, token): connections are kept alive and
# shared by every session of that loop.
_HTTP_POOLS: dict[tuple[int, str, str | None], Any] = {}


class _HttpTransport:
    """REST requests on a pooled keep-alive client of the current event loop."""

    def __init__(self, base: str, config: RemoteConfig) -> None:
        self.base = base
        self.config = config
        self.session_id: str | None = None

    def _client(self) -> Any:
        import httpx

        loop = asyncio.get_running_loop()
        key = (id(loop), self.base, self.config.token)
        client = _HTTP_POOLS.get(key)
        if client is None or client.is_closed:
            headers = {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}
            client = httpx.AsyncClient(
                base_url=self.base, headers=headers,
                timeout=httpx.Timeout(self.config.timeout_s, connect=self.config.connect_timeout_s),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=256))
            _HTTP_POOLS[key] = client
        return client

    async def connect(self, attach: str | None) -> None:
        self.session_id = attach

    async def call(self, frame: dict[str, Any]) -> tuple[int, Any]:
        import httpx

        frame = dict(frame)
        op = frame.pop("op")
        sid = self.session_id
        if op == "create":
            method, path = "POST", "/v1/sessions"
        elif op == "close":
            method, path, frame = "DELETE", f"/v1/sessions/{sid}", None
        else:
            method, path = "POST", f"/v1/sessions/{sid}/{op}"
        try:
            response = await self._client().request(method, path, json=frame)
        except httpx.TimeoutException as exc:
            raise _Retry(f"no reply within {self.config.timeout_s:g} s") from exc
        except httpx.TransportError as exc:
            raise _Retry(f"cannot reach {self.base}: {type(exc).__name__}: {exc}") from exc
        body = _decode(response.content, self.base) if response.content else {}
        if op == "create" and response.status_code == 201 and isinstance(body, dict):
            self.session_id = body.get("session_id")
        if response.status_code == 429:
            body = {**body, "retry_after": response.headers.get("retry-after")}
        return response.status_code, body

    async def close(self) -> None:
        self.session_id = None


def _status_error(status: int, body: Any, op: str) -> Exception:
    """The exception for a non-2xx reply."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        return RemoteProtocolError(f"{op}: unexpected reply (status {status}): {body!r:.200}")
    code, message = error["code"], str(error.get("message", ""))
    if code == "unknown_session":
        return RemoteSessionLostError(f"{op}: the server lost this session: {message}")
    local = _LOCAL_ERRORS.get(str(error.get("type")))
    if local is not None and code in ("env_misuse", "invalid_action", "bad_request", "unknown_env"):
        return local(message)
    return RemoteEnvError(f"{op}: the server refused ({status} {code}): {message}")


class SessionClient:
    """The operations of one remote session, on the transport of the current event loop."""

    def __init__(self, url: str, config: RemoteConfig) -> None:
        self.base = _base_url(url)
        self.config = config
        self.session_id: str | None = None
        self.seq = -1
        self._transport: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None

    def _make_transport(self) -> Any:
        cls = _WsTransport if self.config.transport == "ws" else _HttpTransport
        return cls(self.base, self.config)

    def _bind_loop(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._lock is None:
            # First use, or used from another loop: the old connection belongs to that loop.
            self._loop, self._transport, self._lock = loop, None, asyncio.Lock()
        return self._lock

    async def _ensure(self) -> Any:
        if self._transport is None:
            transport = self._make_transport()
            await transport.connect(self.session_id)
            self._transport = transport
        return self._transport

    async def _drop(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            try:
                await transport.close()
            except (OSError, RuntimeError):  # already broken: nothing to close cleanly
                pass

    async def request(self, frame: dict[str, Any], op: str) -> Any:
        """Send ``frame`` (retrying with the same content) and return the reply body."""
        async with self._bind_loop():
            delay = self.config.backoff_s
            last = ""
            for attempt in range(self.config.retries + 1):
                if attempt:
                    await asyncio.sleep(delay)
                    delay *= 2
                try:
                    transport = await self._ensure()
                    status, body = await transport.call(frame)
                except _Retry as exc:
                    last = str(exc)
                    await self._drop()
                    continue
                if status == 429 and attempt < self.config.retries:
                    wait = body.get("retry_after") if isinstance(body, dict) else None
                    last = f"too many sessions (429, Retry-After {wait})"
                    await asyncio.sleep(min(float(wait or 1), 30.0))
                    continue
                if 200 <= status < 300:
                    if not isinstance(body, dict):
                        raise RemoteProtocolError(f"{op}: reply body is not an object: {body!r:.120}")
                    return body
                if status == 500:  # env failed: the server closed the session
                    self.session_id = None
                raise _status_error(status, body, op)
            raise RemoteUnavailableError(
                f"{op} on {self.base} failed after {self.config.retries + 1} attempts: {last}")

    # -- the session's operations ---------------------------------------------------------
    async def create(self, env_id: str, seed: int | None, options: Any,
                     env_kwargs: dict[str, Any]) -> dict[str, Any]:
        await self._close_session()
        sid = secrets.token_urlsafe(16)  # ours: a retried create is idempotent
        frame: dict[str, Any] = {"op": "create", "env_id": env_id, "session_id": sid}
        if seed is not None:
            frame["seed"] = seed
        if options:
            frame["options"] = dict(options)
        if env_kwargs:
            frame["env_kwargs"] = env_kwargs
        body = await self.request(frame, "create")
        self.session_id, self.seq = sid, 0
        return body

    async def reset(self, seed: int | None, options: Any) -> dict[str, Any]:
        frame: dict[str, Any] = {"op": "reset", "seq": self.seq + 1}
        if seed is not None:
            frame["seed"] = seed
        if options:
            frame["options"] = dict(options)
        body = await self.request(frame, "reset")
        self.seq += 1
        return body

    async def step(self, action: Any) -> dict[str, Any]:
        body = await self.request({"op": "step", "seq": self.seq + 1, "action": action}, "step")
        self.seq += 1
        return body

    async def _close_session(self) -> None:
        """Close the session on the server (a lost one is already closed); keep the connection."""
        if self.session_id is not None:
            try:
                await self.request({"op": "close"}, "close")
            except (RemoteSessionLostError, RemoteUnavailableError):
                pass  # gone already, or unreachable: the server reaps it when idle
        self.session_id, self.seq = None, -1

    def forget_session(self) -> None:
        """The server lost the session: the next reset creates a new one."""
        self.session_id, self.seq = None, -1

    async def aclose(self) -> None:
        """Close the session and the connection."""
        await self._close_session()
        if self._loop is asyncio.get_running_loop():
            await self._drop()
        else:
            self._transport = None
