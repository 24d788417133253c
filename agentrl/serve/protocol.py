"""The wire format of ``agentrl serve``: strict request models, reply shapes, error codes.

Every session operation that changes the env (the reset at creation, ``reset``, ``step``)
carries a sequence number ``seq``: the creation's reset is 0, and each later operation is
the previous one plus 1. The server applies an operation only when its ``seq`` is the next
one; a repeated ``seq`` (a client retry after a lost reply) returns the stored reply of
that operation without applying it again; any other ``seq`` is refused (409
``out_of_order``). So a retried step is never applied twice.

The same bodies travel over REST (one request per operation) and over the per-session
WebSocket (``/v1/ws``: JSON text frames ``{"op": ..., ...}`` in, ``{"status": S, "body":
{...}}`` out, with the REST status codes).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "API_PREFIX",
    "ActionMessage",
    "CreateSession",
    "ResetSession",
    "StepSession",
    "AttachSession",
    "CloseSession",
    "WsRequest",
    "SessionReply",
    "StepReply",
    "ErrorBody",
    "ErrorReply",
    "EnvList",
    "TaskList",
    "Health",
    "SessionInfo",
    "ERROR_CODES",
]

API_PREFIX = "/v1"

_STRICT = ConfigDict(strict=True, extra="forbid")
_SESSION_ID = Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
_ENV_ID = Annotated[str, Field(min_length=1, max_length=200)]
_SEQ = Annotated[int, Field(ge=0, le=2**53)]
_SEED = Annotated[int, Field(ge=0, le=2**63 - 1)]

#: Error codes in :class:`ErrorBody` (``code``) and the HTTP status each comes with.
ERROR_CODES: dict[str, int] = {
    "bad_request": 400,  # the env refused the arguments (unknown task id, bad options)
    "env_misuse": 409,  # step before reset / after the end (the env's own API error)
    "invalid_action": 400,  # the action is neither text nor an assistant message
    "env_kwargs_not_allowed": 403,  # the server does not take constructor arguments
    "unauthorized": 401,  # missing or wrong bearer token
    "unknown_env": 404,  # the env id is not served here
    "unknown_session": 404,  # no such session (closed, reaped, or the server restarted)
    "out_of_order": 409,  # seq is neither the next operation nor the last one (a retry)
    "session_conflict": 409,  # a create with an existing session id but different content
    "too_large": 413,  # the request body exceeds the server's limit
    "invalid_request": 422,  # the body does not match the schema
    "too_many_sessions": 429,  # max-sessions reached (Retry-After says when to retry)
    "env_failed": 500,  # the env raised an unexpected error; the session is closed
    "malformed_body": 400,  # the body cannot be read as JSON (e.g. not UTF-8)
    "not_found": 404,  # no such path
    "method_not_allowed": 405,  # the path does not take this method
}


class ActionMessage(BaseModel):
    """An assistant message action (OpenAI chat shape; ``tool_calls`` optional)."""

    model_config = ConfigDict(strict=True, extra="allow")
    role: Literal["assistant"]
    content: str | None = None


class CreateSession(BaseModel):
    """``POST /v1/sessions``: make an env instance and reset it (operation ``seq`` 0)."""

    model_config = _STRICT
    env_id: _ENV_ID
    seed: _SEED | None = None
    options: dict[str, Any] | None = None
    env_kwargs: dict[str, Any] | None = None
    session_id: _SESSION_ID | None = Field(
        default=None,
        description="Client-chosen id (makes a retried create idempotent); default: random.",
    )


class ResetSession(BaseModel):
    """``POST /v1/sessions/{id}/reset``: start a new episode on the same env instance."""

    model_config = _STRICT
    seq: _SEQ
    seed: _SEED | None = None
    options: dict[str, Any] | None = None


class StepSession(BaseModel):
    """``POST /v1/sessions/{id}/step``: one assistant turn."""

    model_config = _STRICT
    seq: _SEQ
    action: Annotated[str, Field(max_length=1_000_000)] | ActionMessage


class AttachSession(BaseModel):
    """WebSocket only: bind this connection to an existing session (after a reconnect)."""

    model_config = _STRICT
    op: Literal["attach"]
    session_id: _SESSION_ID


class CloseSession(BaseModel):
    """WebSocket only: close the bound session (and then the connection)."""

    model_config = _STRICT
    op: Literal["close"]


class _WsCreate(CreateSession):
    op: Literal["create"]


class _WsReset(ResetSession):
    op: Literal["reset"]


class _WsStep(StepSession):
    op: Literal["step"]


#: One WebSocket request frame.
WsRequest = Annotated[
    _WsCreate | _WsReset | _WsStep | AttachSession | CloseSession, Field(discriminator="op")
]


class SessionReply(BaseModel):
    """Reply to a create or reset: the first messages of the episode."""

    session_id: str
    seq: int
    messages: list[dict[str, Any]]
    info: dict[str, Any]


class StepReply(BaseModel):
    """Reply to a step (gymnasium's 5-tuple as named fields)."""

    session_id: str
    seq: int
    messages: list[dict[str, Any]]
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


class ErrorBody(BaseModel):
    """What went wrong: a code from :data:`ERROR_CODES`, a message, and for env errors
    the name of the :mod:`agentrl.errors` class the env raised."""

    code: str
    message: str
    type: str | None = None
    expected_seq: int | None = None


class ErrorReply(BaseModel):
    """Every non-2xx reply."""

    error: ErrorBody


class EnvList(BaseModel):
    """``GET /v1/envs``."""

    envs: list[str]


class TaskList(BaseModel):
    """``GET /v1/tasks?env_id=ID``: the env's finite task ids, or null (tasks are generated
    from the seed)."""

    env_id: str
    task_ids: list[str] | None


class Health(BaseModel):
    """``GET /v1/health``."""

    status: Literal["ok"]
    sessions: int
    max_sessions: int
    uptime_s: float


class SessionInfo(BaseModel):
    """``GET /v1/sessions/{id}``."""

    session_id: str
    env_id: str
    seq: int
    idle_s: float
    age_s: float
