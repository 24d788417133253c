"""Helpers shared by the subprocess-based backends (bwrap, local)."""

from __future__ import annotations

import os
import resource
import signal
from collections.abc import Mapping
from pathlib import PurePosixPath

from agentrl.errors import ConfigError
from agentrl.sandbox._proc import RawOutcome
from agentrl.sandbox.base import ExecResult, Files, Limits, Status

__all__ = ["classify", "to_result", "check_files", "prlimit_argv", "rlimit_values", "BASE_ENV"]

#: The environment every sandboxed program starts from (the host's is never passed on).
BASE_ENV: Mapping[str, str] = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/work",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}

_MEMORY_MARKERS = (b"MemoryError", b"Cannot allocate memory", b"std::bad_alloc", b"out of memory")


def classify(raw: RawOutcome, exit_code: int | None, limits: Limits, *,
             oom: bool = False) -> Status:
    """Map a finished process to a :class:`Status` (``oom``: its cgroup saw an OOM kill)."""
    if raw.timed_out:
        return Status.TIMEOUT
    if raw.output_exceeded:
        return Status.OUTPUT_LIMIT
    if oom:
        return Status.MEMORY_LIMIT  # a process of the program was killed for memory
    if exit_code == 0:
        return Status.OK
    if exit_code == -signal.SIGXCPU or (
        exit_code == -signal.SIGKILL and raw.cpu_time >= limits.cpu_time
    ):
        return Status.TIMEOUT
    tail = raw.stderr[-4096:]
    if any(marker in tail for marker in _MEMORY_MARKERS):
        return Status.MEMORY_LIMIT
    return Status.RUNTIME_ERROR


def to_result(raw: RawOutcome, exit_code: int | None, limits: Limits, *,
              oom: bool = False) -> ExecResult:
    """Build the :class:`ExecResult` of a finished process."""
    return ExecResult(
        status=classify(raw, exit_code, limits, oom=oom),
        stdout=raw.stdout.decode("utf-8", errors="replace"),
        stderr=raw.stderr.decode("utf-8", errors="replace"),
        exit_code=exit_code,
        wall_time=raw.wall_time,
        cpu_time=raw.cpu_time,
        stdout_truncated=raw.stdout_total > limits.output,
        stderr_truncated=raw.stderr_total > limits.output,
    )


def check_files(files: Files | None) -> dict[str, bytes]:
    """Validate relative paths and encode contents; raises ConfigError on a bad path."""
    out: dict[str, bytes] = {}
    for name, content in (files or {}).items():
        path = PurePosixPath(name)
        if not name or path.is_absolute() or ".." in path.parts:
            raise ConfigError(
                f"sandbox file name {name!r} must be a relative path inside the work "
                "directory (no leading '/', no '..')"
            )
        if isinstance(content, str):
            content = content.encode("utf-8")
        if not isinstance(content, bytes):
            raise ConfigError(f"sandbox file {name!r} must be str or bytes, got {type(content)}")
        out[str(path)] = content
    return out


def rlimit_values(limits: Limits, *, cpu: bool = True, nproc: bool = True
                  ) -> list[tuple[int, int, int]]:
    """(resource, soft, hard) triples for ``resource.prlimit``; the same limits as
    :func:`prlimit_argv`."""
    cpu_s = max(1, int(limits.cpu_time + 0.999))
    values = [
        (resource.RLIMIT_AS, limits.memory, limits.memory),
        (resource.RLIMIT_FSIZE, limits.file_size, limits.file_size),
        (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    if nproc:
        values.append((resource.RLIMIT_NPROC, limits.processes, limits.processes))
    if cpu:
        # Soft limit sends SIGXCPU; the hard limit one second later is SIGKILL.
        values.append((resource.RLIMIT_CPU, cpu_s, cpu_s + 1))
    return values


def prlimit_argv(limits: Limits, *, cpu: bool = True, nproc: bool = True) -> list[str]:
    """``prlimit`` arguments that set hard+soft rlimits before exec'ing the program."""
    cpu_s = max(1, int(limits.cpu_time + 0.999))
    argv = [
        "/usr/bin/prlimit",
        f"--as={limits.memory}",
        f"--fsize={limits.file_size}",
        f"--nofile={limits.open_files}",
        "--core=0",
    ]
    if nproc:
        argv.append(f"--nproc={limits.processes}")
    if cpu:
        # Soft limit sends SIGXCPU; the hard limit one second later is SIGKILL.
        argv.append(f"--cpu={cpu_s}:{cpu_s + 1}")
    return [*argv, "--"]


def signal_exit_code(returncode: int) -> int:
    """bwrap reports death by signal N as 128+N; turn that back into -N."""
    if returncode > 128 and returncode - 128 < signal.NSIG:
        return -(returncode - 128)
    return returncode


def python_default() -> str:
    """The interpreter used inside sandboxes: the system python3 (no host site-packages)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate):
            return candidate
    raise ConfigError(
        "no python3 in /usr/bin or /usr/local/bin to run inside the sandbox; install the "
        "Debian package python3 or pass python=... to the backend"
    )
