"""A :class:`~agentrl.env.ToolEnv` whose ``python`` tool runs in one sandboxed session per episode.

Each episode gets its own persistent interpreter (variables stay defined between the
agent's calls), taken from a warm :class:`~agentrl.sandbox.SessionPool` at reset and
closed when the episode ends and on ``close()``. ``PythonInterpreter-v0`` and
``HumanEval-v0`` build on it.
"""

from __future__ import annotations

from typing import Any

from agentrl.env import ToolEnv
from agentrl.errors import SandboxError
from agentrl.sandbox import Limits, SandboxBackend, SessionPool, Status, get_backend
from agentrl.sandbox.tooling import TOOL_LIMITS, PythonSession
from agentrl.tool import Tool

__all__ = ["SessionToolEnv"]


class SessionToolEnv(ToolEnv):
    """A :class:`ToolEnv` whose ``python`` tool runs in one sandboxed session per episode.

    Subclasses implement ``sample_task`` and ``grade`` (or ``grade_episode``) as for any
    :class:`ToolEnv`.

    Args:
        backend: sandbox backend name or instance (default ``"bwrap"``).
        pool_size: sessions kept started ahead of time (0: start on demand).
        limits: per-call limits of the ``python`` tool.
        extra_tools: more tools beside ``python``.
        **kwargs: passed to :class:`ToolEnv` (``max_turns``, ``tool_format``, ...).
    """

    def __init__(self, *, backend: str | SandboxBackend = "bwrap", pool_size: int = 1,
                 limits: Limits | None = None, extra_tools: tuple[Tool, ...] = (),
                 **kwargs: Any) -> None:
        self.backend = get_backend(backend) if isinstance(backend, str) else backend
        self.limits = limits or TOOL_LIMITS
        self.pool = SessionPool(self.backend, size=pool_size, limits=self.limits)
        self.python: PythonSession | None = None
        tool = Tool(self._run_python, name="python")
        super().__init__([tool, *extra_tools], **kwargs)

    def _run_python(self, code: str) -> str:
        """Run Python code in a persistent interpreter: variables, functions and imports stay defined between calls. The value of a final expression is printed, as in a notebook.

        Args:
            code: Python code to run. No network access; each call has a time limit.
        """
        if self.python is None:  # only reachable through misuse: the env checks reset first
            raise SandboxError("no session: call reset() first")
        return self.python.run(code)

    def on_episode_start(self) -> None:
        self.on_episode_end()
        self.python = PythonSession(self.backend, self.limits, pool=self.pool)

    def on_episode_end(self) -> None:
        session, self.python = self.python, None
        if session is not None:
            session.close()

    def run_setup(self, code: str) -> None:
        """Run trusted set-up code in the episode's session; raises SandboxError if it fails."""
        if not code or self.python is None:
            return
        result = self.python.execute(code)
        if result.status is not Status.OK:
            raise SandboxError(f"episode set-up failed in the sandbox: {result.stderr[-500:]}")

    def close(self) -> None:
        super().close()
        self.pool.close()
