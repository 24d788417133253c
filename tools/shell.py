"""A shell tool on the sandbox: ``/bin/sh -c COMMAND`` in a fresh, isolated sandbox.

Each call starts from an empty work directory (state is not kept between calls); the
system's tools (coreutils, python3, ...) are available read-only, the network is not.
"""

from __future__ import annotations

from agentrl.sandbox import Limits, SandboxBackend
from agentrl.sandbox.tooling import TOOL_LIMITS, default_backend, format_result
from agentrl.tool import Tool, tool

__all__ = ["shell", "make_shell_tool"]


@tool
def shell(command: str) -> str:
    """Run a shell command with /bin/sh in a fresh, isolated sandbox and return its output.

    Args:
        command: The command line, e.g. "ls -la && wc -l *.txt". No network; nothing is kept between calls.
    """
    return format_result(default_backend().execute(["/bin/sh", "-c", command],
                                                   limits=TOOL_LIMITS))


def make_shell_tool(backend: SandboxBackend, limits: Limits | None = None,
                    name: str = "shell") -> Tool:
    """A shell tool bound to ``backend`` and ``limits`` (for custom environments)."""
    call_limits = limits or TOOL_LIMITS

    def run(command: str) -> str:
        return format_result(backend.execute(["/bin/sh", "-c", command], limits=call_limits))

    run.__doc__ = shell.fn.__doc__
    return Tool(run, name=name)
