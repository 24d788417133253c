"""Shared helpers of the sandbox-backed tools (``agentrl.tools.python``, ``agentrl.tools.shell``)
and of :class:`~agentrl.session_env.SessionToolEnv`: the default backend, per-call limits,
the text a model sees for one execution, and :class:`PythonSession`.

    session = PythonSession()                           # one interpreter, state kept
    env_tools = [session.tool]                          # a Tool named "python"
    ...
    session.close()                                     # at episode end

A tool's text result is what the model sees: stdout, then stderr, then a status line
when the run did not end normally (timeout, memory, output cut). An infrastructure fault
(the sandbox cannot start) raises :class:`~agentrl.errors.SandboxError` instead.
"""

from __future__ import annotations

import threading

from agentrl.sandbox import ExecResult, Limits, SandboxBackend, Session, SessionPool, Status
from agentrl.sandbox import get_backend as _get_backend
from agentrl.tool import Tool

__all__ = ["PythonSession", "format_result", "default_backend", "TOOL_LIMITS"]

#: Limits used by the tools unless given: short enough for an agent's turn.
TOOL_LIMITS = Limits(wall_time=10.0, cpu_time=10.0, output=16 * 1024)

_STATUS_NOTES = {
    Status.TIMEOUT: "[the program was stopped: time limit exceeded]",
    Status.MEMORY_LIMIT: "[the program was stopped: memory limit exceeded]",
    Status.OUTPUT_LIMIT: "[output truncated: output limit exceeded]",
}
_backend: SandboxBackend | None = None
_backend_lock = threading.Lock()


def default_backend() -> SandboxBackend:
    """The shared bwrap backend, created (and checked) on first use."""
    global _backend
    with _backend_lock:
        if _backend is None:
            _backend = _get_backend("bwrap")
        return _backend


def format_result(result: ExecResult) -> str:
    """The text the model sees for one execution."""
    parts = []
    if result.stdout:
        parts.append(result.stdout.rstrip("\n"))
    if result.stderr:
        parts.append(result.stderr.rstrip("\n"))
    note = _STATUS_NOTES.get(result.status)
    if note:
        parts.append(note)
    elif result.status is Status.RUNTIME_ERROR and not result.stderr:
        parts.append(f"[exit code {result.exit_code}]")
    return "\n".join(parts) if parts else "(no output)"


class PythonSession:
    """A persistent sandboxed interpreter, exposed to the model as a tool named ``python``.

    The interpreter starts on first use (or comes from ``pool``) and keeps variables
    between calls; :meth:`close` ends it. Each call gets ``limits`` (wall/CPU/output).

    Args:
        backend: sandbox backend (default: the shared bwrap backend).
        limits: per-call limits (default :data:`TOOL_LIMITS`).
        pool: a warm :class:`SessionPool` to take the interpreter from.
    """

    def __init__(self, backend: SandboxBackend | None = None, limits: Limits | None = None,
                 pool: SessionPool | None = None) -> None:
        self.backend = backend or (pool.backend if pool is not None else default_backend())
        self.limits = limits or TOOL_LIMITS
        self.pool = pool
        self._session: Session | None = None
        self.tool = Tool(self.run, name="python")

    @property
    def session(self) -> Session:
        """The underlying session (started on first access)."""
        if self._session is None:
            if self.pool is not None:
                self._session = self.pool.acquire()
            else:
                self._session = self.backend.open_session(self.limits)
        return self._session

    def execute(self, code: str) -> ExecResult:
        """Run ``code`` in the session and return the full result."""
        return self.session.run(code, limits=self.limits)

    def run(self, code: str) -> str:
        """Run Python code in a persistent interpreter: variables, functions and imports stay defined between calls. The value of a final expression is printed, as in a notebook.

        Args:
            code: Python code to run. No network access; each call has a time limit.
        """
        return format_result(self.execute(code))

    def close(self) -> None:
        """End the interpreter (its state is discarded). Safe to call twice."""
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def __enter__(self) -> PythonSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
