"""The sandbox interface: limits, results and the backend base class.

A backend runs one command (or one Python program) with files, stdin and limits and
returns an :class:`ExecResult`. The program's own failures (crash, timeout, memory,
too much output) are *statuses* in the result; a fault of the sandbox itself (it could
not start) raises :class:`~agentrl.errors.SandboxError` and never looks like a program
result.
"""

from __future__ import annotations

import asyncio
import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentrl.errors import ConfigError, SandboxError

if TYPE_CHECKING:
    from agentrl.sandbox.session import Session

__all__ = ["Status", "Limits", "ExecResult", "SandboxBackend", "Files", "MIB"]

MIB = 1024 * 1024

#: Files to place in the work directory: relative path -> text or bytes.
Files = Mapping[str, "str | bytes"]


class Status(enum.StrEnum):
    """How a program run ended (a small fixed set)."""

    OK = "ok"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    SANDBOX_ERROR = "sandbox_error"


@dataclass(frozen=True)
class Limits:
    """Resource limits for one execution (or one call into a session). Defaults are safe."""

    wall_time: float = 10.0
    """Seconds of wall-clock time before the whole process tree is killed."""
    cpu_time: float = 10.0
    """Seconds of CPU time per process (RLIMIT_CPU)."""
    memory: int = 1024 * MIB
    """Bytes of address space per process (RLIMIT_AS) and, where cgroups work, of memory
    for the whole sandbox, swap off: its processes, tmpfs and /dev/shm pages, shared
    memory, kernel objects and socket buffers (bwrap: a cgroup per sandbox)."""
    processes: int = 64
    """Number of processes/threads inside the sandbox (RLIMIT_NPROC per sandbox user
    namespace, and the pids cgroup where cgroups work)."""
    file_size: int = 16 * MIB
    """Largest file a program may write, in bytes (RLIMIT_FSIZE)."""
    open_files: int = 256
    """Open file descriptors per process (RLIMIT_NOFILE)."""
    output: int = 1 * MIB
    """Bytes kept of stdout and of stderr each; a program writing more is stopped."""
    workdir_size: int = 64 * MIB
    """Size in bytes of each writable tmpfs: the work directory, /tmp and /dev/shm."""

    def __post_init__(self) -> None:
        for name in ("wall_time", "cpu_time"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"Limits.{name} must be > 0 seconds, got {value!r}")
        for name in ("memory", "processes", "file_size", "open_files", "output", "workdir_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"Limits.{name} must be a positive int, got {value!r}")
        if self.processes < 4:
            raise ConfigError(
                f"Limits.processes={self.processes} is too low: the sandbox itself needs "
                "3 processes; use at least 4"
            )
        if self.memory < 32 * MIB:
            raise ConfigError(
                f"Limits.memory={self.memory} bytes is below 32 MiB; Python cannot start there"
            )


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one execution."""

    status: Status
    """How the run ended."""
    stdout: str
    """Standard output (decoded as UTF-8 with replacement), at most ``Limits.output`` bytes."""
    stderr: str
    """Standard error, capped like stdout."""
    exit_code: int | None
    """Exit code; negative for death by signal; None when killed by the harness."""
    wall_time: float
    """Seconds from start to end."""
    cpu_time: float
    """CPU seconds used by the program (children it waited for included)."""
    stdout_truncated: bool = False
    """True when stdout was longer than the cap."""
    stderr_truncated: bool = False
    """True when stderr was longer than the cap."""

    @property
    def ok(self) -> bool:
        """True when the program exited normally with code 0."""
        return self.status is Status.OK

    @property
    def truncated(self) -> bool:
        """True when any output stream was cut."""
        return self.stdout_truncated or self.stderr_truncated


class SandboxBackend(ABC):
    """Runs commands in isolation. Subclasses implement :meth:`execute`.

    Use :meth:`run_python` for Python source, :meth:`aexecute`/:meth:`arun_python` from
    asyncio, and :meth:`open_session` for a persistent interpreter (where supported).
    """

    #: Backend name as accepted by :func:`agentrl.sandbox.get_backend`.
    name: str = "base"
    #: Whether the backend isolates the program from the host (False only for ``local``).
    isolated: bool = True

    @abstractmethod
    def execute(
        self,
        command: Sequence[str],
        *,
        files: Files | None = None,
        stdin: str | bytes = b"",
        limits: Limits | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult:
        """Run ``command`` (argv) in a fresh sandbox whose work directory holds ``files``.

        Args:
            command: argv; ``command[0]`` is looked up on the sandbox's PATH.
            files: relative path -> content, written into the work directory first.
            stdin: bytes (or text) fed to standard input, then EOF.
            limits: resource limits (``Limits()`` when None).
            env: extra environment variables (the environment is otherwise cleared).

        Returns:
            The :class:`ExecResult`; program failures are statuses, not exceptions.

        Raises:
            SandboxError: the sandbox itself could not run (an infrastructure fault).
        """

    @property
    def python(self) -> str:
        """The Python interpreter to use inside the sandbox."""
        return "python3"

    def run_python(
        self,
        code: str,
        *,
        files: Files | None = None,
        stdin: str | bytes = b"",
        limits: Limits | None = None,
        args: Sequence[str] = (),
    ) -> ExecResult:
        """Run Python source ``code`` (isolated mode, ``-I``) with the given files and limits."""
        return self.execute([self.python, "-I", "-c", code, *args], files=files, stdin=stdin,
                            limits=limits)

    def execute_many(
        self,
        commands: Sequence[Sequence[str]],
        *,
        workers: int = 4,
        limits: Limits | None = None,
        env: Mapping[str, str] | None = None,
    ) -> list[ExecResult]:
        """Run many commands concurrently (results in input order).

        Unlike :meth:`execute`, a sandbox fault does not raise: that item's result has
        status ``SANDBOX_ERROR`` and the error text in ``stderr``, so one bad item does not
        lose the batch.
        """

        def one(command: Sequence[str]) -> ExecResult:
            try:
                return self.execute(command, limits=limits, env=env)
            except SandboxError as err:
                return ExecResult(status=Status.SANDBOX_ERROR, stdout="", stderr=str(err),
                                  exit_code=None, wall_time=0.0, cpu_time=0.0)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return list(pool.map(one, commands))

    async def aexecute(self, command: Sequence[str], **kwargs: object) -> ExecResult:
        """Async :meth:`execute` (runs in a worker thread; many may be in flight)."""
        return await asyncio.to_thread(self.execute, command, **kwargs)  # type: ignore[arg-type]

    async def arun_python(self, code: str, **kwargs: object) -> ExecResult:
        """Async :meth:`run_python`."""
        return await asyncio.to_thread(self.run_python, code, **kwargs)  # type: ignore[arg-type]

    def open_session(self, limits: Limits | None = None) -> Session:
        """A persistent sandboxed Python interpreter (state kept across calls), started on
        first use. Needs a backend that can ``spawn`` (bwrap, local); raises SandboxError
        otherwise."""
        from agentrl.sandbox.session import Session

        return Session(self, limits or Limits())
