"""Python execution tools on the sandbox: a fresh sandbox per call, or a persistent session.

    from agentrl.tools.python import python            # fresh bwrap sandbox per call
    session = PythonSession()                           # one interpreter, state kept
    env_tools = [session.tool]                          # a Tool named "python"
    ...
    session.close()                                     # at episode end

The tool's text result is what the model sees: stdout, then stderr, then a status line
when the run did not end normally (timeout, memory, output cut). An infrastructure fault
(the sandbox cannot start) raises :class:`~agentrl.errors.SandboxError` instead.
``PythonSession``, ``format_result``, ``default_backend`` and ``TOOL_LIMITS`` live in
:mod:`agentrl.sandbox.tooling` (shared with the shell tool) and are re-exported here.
"""

from __future__ import annotations

from agentrl.sandbox.tooling import TOOL_LIMITS, PythonSession, default_backend, format_result
from agentrl.tool import tool

__all__ = ["python", "PythonSession", "format_result", "default_backend", "TOOL_LIMITS"]


@tool
def python(code: str) -> str:
    """Run a Python 3 program in a fresh, isolated sandbox and return what it prints.

    Args:
        code: The complete program. Use print() to see results; no network; state is not kept between calls.
    """
    return format_result(default_backend().run_python(code, limits=TOOL_LIMITS))
