"""The ASGI app of ``agentrl serve`` (FastAPI): REST endpoints, the per-session WebSocket,
bearer-token and body-size checks before any work, and the Prometheus metrics page.

``create_app(ServerConfig(...))`` returns the app; :mod:`agentrl.serve.cli` runs it on
uvicorn (uvloop, httptools). ``GET /openapi.json`` publishes the schema; every status an
endpoint can return is documented there (the schemathesis test checks it).
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query, Request, WebSocket
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentrl.serve.protocol import (
    API_PREFIX,
    AttachSession,
    CloseSession,
    CreateSession,
    EnvList,
    ErrorReply,
    Health,
    ResetSession,
    SessionInfo,
    SessionReply,
    StepReply,
    StepSession,
    TaskList,
    WsRequest,
)
from agentrl.serve.sessions import ApiError, Reply, ServerConfig, SessionManager

__all__ = ["create_app", "OPEN_PATHS"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths served without the bearer token (load balancers' health checks, the schema).
OPEN_PATHS = frozenset({f"{API_PREFIX}/health", "/openapi.json", "/docs", "/docs/oauth2-redirect"})
_WS_REQUEST: TypeAdapter[Any] = TypeAdapter(WsRequest)
# Codes for the framework's own HTTP errors (unparsable body, unknown path, wrong method).
_HTTP_CODES = {400: "malformed_body", 404: "not_found", 405: "method_not_allowed"}
_SID = PathParam(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorReply} for code in codes}


def _error_bytes(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


class Guard:
    """Pure-ASGI middleware: bearer token (401) and body size (413) before the app runs;
    counts replies per status for the metrics."""

    def __init__(self, app: ASGIApp, config: ServerConfig, manager: SessionManager) -> None:
        self.app = app
        self.token = f"Bearer {config.token}".encode() if config.token else None
        self.limit = config.max_body_bytes
        self.manager = manager

    def _authorized(self, scope: Scope) -> bool:
        if self.token is None or scope.get("path") in OPEN_PATHS:
            return True
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                return hmac.compare_digest(value, self.token)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            if not self._authorized(scope):
                self.manager.count("agentrl_serve_rejected_total", "unauthorized")
                await _deny_websocket(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if kind != "http":
            await self.app(scope, receive, send)
            return
        if not self._authorized(scope):
            self.manager.count("agentrl_serve_rejected_total", "unauthorized")
            await _send_plain(send, 401, _error_bytes("unauthorized", "missing or wrong bearer "
                              "token (Authorization: Bearer TOKEN)"),
                              [(b"www-authenticate", b'Bearer realm="agentrl"')])
            return
        length = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                length = int(value) if value.isdigit() else -1
                break
        if length is not None and (length < 0 or length > self.limit):
            self.manager.count("agentrl_serve_rejected_total", "too_large")
            await _send_plain(send, 413, _error_bytes("too_large", f"the request body exceeds "
                              f"{self.limit} bytes"), [(b"connection", b"close")])
            return
        if length is None and scope.get("method") in ("POST", "PUT", "PATCH", "DELETE"):
            body = bytearray()  # chunked: read it all (bounded) before the app sees it
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                body += message.get("body", b"")
                if len(body) > self.limit:
                    self.manager.count("agentrl_serve_rejected_total", "too_large")
                    await _send_plain(send, 413, _error_bytes("too_large", f"the request body "
                                      f"exceeds {self.limit} bytes"), [(b"connection", b"close")])
                    return
                if not message.get("more_body"):
                    break
            receive = _replay(bytes(body), receive)

        counters = self.manager.metrics.counters

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                key = ("agentrl_serve_requests_total", str(message["status"]))
                counters[key] = counters.get(key, 0) + 1
            await send(message)

        await self.app(scope, receive, counting_send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_plain(send: Send, status: int, body: bytes,
                      headers: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


async def _deny_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """Refuse a WebSocket handshake with HTTP 401 (or close code 1008 where the server
    cannot send an HTTP response)."""
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):
        body = _error_bytes("unauthorized", "missing or wrong bearer token")
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})


def _response(reply: Reply) -> Response:
    status, body, headers = reply
    return Response(content=body, status_code=status, headers=headers,
                    media_type="application/json")


def create_app(config: ServerConfig, manager: SessionManager | None = None) -> Any:
    """The ASGI app serving ``config.env_ids`` (wrapped in the token/size guard)."""
    manager = manager or SessionManager(config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        manager.start()
        try:
            yield
        finally:
            await manager.shutdown()

    app = FastAPI(title="agentrl env server", version="1", lifespan=lifespan,
                  description="Registered agentrl environments behind a network API: one "
                  "session per env instance; sequence-numbered operations (a retried seq "
                  "returns the stored reply); a WebSocket per session at /v1/ws.")
    app.state.manager = manager
    generate_schema = app.openapi

    def openapi() -> dict[str, Any]:
        """The schema, with the served env ids as the ``env_id`` enum."""
        if app.openapi_schema is None:
            schema = generate_schema()
            props = schema["components"]["schemas"]["CreateSession"]["properties"]
            props["env_id"]["enum"] = list(config.env_ids)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> Response:
        return _response(exc.reply())

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "invalid_request")
        return Response(_error_bytes(code, str(exc.detail)), exc.status_code,
                        headers=exc.headers, media_type="application/json")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        message = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}"
                            for e in exc.errors()[:5])
        return Response(_error_bytes("invalid_request", message), 422,
                        media_type="application/json")

    auth = (401,) if config.token else ()

    @app.get(f"{API_PREFIX}/health", response_model=Health)
    async def health() -> Health:
        return Health(status="ok", sessions=len(manager.sessions),
                      max_sessions=config.max_sessions,
                      uptime_s=time.monotonic() - manager.started)

    @app.get(f"{API_PREFIX}/envs", response_model=EnvList, responses=_errors(*auth))
    async def envs() -> EnvList:
        return EnvList(envs=list(config.env_ids))

    @app.get(f"{API_PREFIX}/tasks", response_model=TaskList, responses=_errors(*auth, 404, 422, 500))
    async def tasks(env_id: str = Query(min_length=1, max_length=200)) -> TaskList:
        return TaskList(env_id=env_id, task_ids=await manager.task_ids(env_id))

    @app.get("/metrics", response_class=PlainTextResponse, responses=_errors(*auth))
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(manager.metrics_text(),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post(f"{API_PREFIX}/sessions", status_code=201, response_model=SessionReply,
              responses=_errors(*auth, 400, 403, 404, 409, 413, 422, 429, 500))
    async def create(req: CreateSession) -> Response:
        return _response(await manager.create(req))

    @app.get(f"{API_PREFIX}/sessions/{{session_id}}", response_model=SessionInfo,
             responses=_errors(*auth, 404, 422))
    async def info(session_id: str = _SID) -> SessionInfo:
        s = manager.get(session_id)
        now = time.monotonic()
        return SessionInfo(session_id=s.id, env_id=s.env_id, seq=s.seq,
                           idle_s=now - s.last_used, age_s=now - s.created)

    @app.post(f"{API_PREFIX}/sessions/{{session_id}}/reset", response_model=SessionReply,
              responses=_errors(*auth, 400, 404, 409, 413, 422, 500))
    async def reset(req: ResetSession, session_id: str = _SID) -> Response:
        return _response(await manager.reset(session_id, req))

    @app.post(f"{API_PREFIX}/sessions/{{session_id}}/step", response_model=StepReply,
              responses=_errors(*auth, 400, 404, 409, 413, 422, 500))
    async def step(req: StepSession, session_id: str = _SID) -> Response:
        return _response(await manager.step(session_id, req))

    @app.delete(f"{API_PREFIX}/sessions/{{session_id}}", status_code=204,
                responses=_errors(*auth, 404, 422))
    async def close(session_id: str = _SID) -> Response:
        await manager.close(session_id)
        return Response(status_code=204)

    @app.websocket(f"{API_PREFIX}/ws")
    async def ws(websocket: WebSocket) -> None:
        await _serve_websocket(websocket, manager)

    return Guard(app, config, manager)


async def _ws_handle(manager: SessionManager, sid: str | None, text: str | bytes
                     ) -> tuple[str | None, Reply]:
    """One WebSocket request: the session id bound afterwards and the reply."""
    try:
        req = _WS_REQUEST.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = f"{'.'.join(map(str, first.get('loc', ())))}: {first.get('msg')}"
        return sid, (422, _error_bytes("invalid_request", message), {})
    try:
        if isinstance(req, CreateSession):
            if sid is not None:
                raise ApiError("session_conflict", "this connection is bound to session "
                               f"{sid}; open another connection for another session")
            reply = await manager.create(req)
            return json.loads(reply[1])["session_id"], reply
        if isinstance(req, AttachSession):
            manager.get(req.session_id).last_used = time.monotonic()
            return req.session_id, (200, b"{}", {})
        if sid is None:
            raise ApiError("unknown_session", "send create or attach first")
        if isinstance(req, CloseSession):
            await manager.close(sid)
            return None, (204, b"{}", {})
        if isinstance(req, StepSession):
            return sid, await manager.step(sid, req)
        if isinstance(req, ResetSession):
            return sid, await manager.reset(sid, req)
        raise ApiError("invalid_request", f"unknown op {req!r:.80}")  # unreachable
    except ApiError as exc:
        return sid, exc.reply()


async def _serve_websocket(websocket: WebSocket, manager: SessionManager) -> None:
    """Frames ``{"op": ...}`` in, ``{"status": S, "body": {...}}`` out, until the client
    leaves. A session outlives its connection (reattach, or it is reaped when idle)."""
    await websocket.accept()
    sid: str | None = None
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        sid, (status, body, headers) = await _ws_handle(manager, sid, data)
        frame = b'{"status":%d,"body":%s' % (status, body)
        if "Retry-After" in headers:
            frame += b',"retry_after":%s' % headers["Retry-After"].encode()
        await websocket.send_bytes(frame + b"}")
