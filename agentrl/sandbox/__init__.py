"""Sandboxed code execution: one interface, three backends, persistent sessions.

>>> from agentrl.sandbox import get_backend
>>> sandbox = get_backend()            # bubblewrap; raises SandboxUnavailableError if broken
>>> sandbox.run_python("print(6 * 7)").stdout
'42\\n'
"""

from __future__ import annotations

from agentrl.errors import ConfigError
from agentrl.sandbox.base import MIB, ExecResult, Files, Limits, SandboxBackend, Status
from agentrl.sandbox.session import Session, SessionPool

__all__ = [
    "BACKENDS",
    "ExecResult",
    "Files",
    "Limits",
    "MIB",
    "SandboxBackend",
    "Session",
    "SessionPool",
    "Status",
    "get_backend",
]

#: Names accepted by :func:`get_backend`.
BACKENDS = ("bwrap", "docker", "local")


def get_backend(name: str = "bwrap", **options: object) -> SandboxBackend:
    """Create a sandbox backend by name and check at start-up that it works.

    Args:
        name: ``"bwrap"`` (default; Linux + bubblewrap), ``"docker"`` (needs a Docker
            engine and the ``docker`` package) or ``"local"`` (no isolation; warns).
        **options: passed to the backend's constructor.

    Raises:
        ConfigError: unknown name.
        SandboxUnavailableError: the backend cannot run here; the message says what is
            missing and how to fix it.
    """
    if name == "bwrap":
        from agentrl.sandbox.bwrap import BwrapBackend

        return BwrapBackend(**options)  # type: ignore[arg-type]
    if name == "docker":
        from agentrl.sandbox.docker import DockerBackend

        return DockerBackend(**options)  # type: ignore[arg-type]
    if name == "local":
        from agentrl.sandbox.local import LocalBackend

        return LocalBackend(**options)  # type: ignore[arg-type]
    raise ConfigError(f"unknown sandbox backend {name!r}; choose one of {', '.join(BACKENDS)}")
