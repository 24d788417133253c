"""The local backend: a plain subprocess with rlimits and NO isolation (development only).

It can read every file the harness can, reach the network and, when the harness runs as
root, escape the process limit (root ignores RLIMIT_NPROC). It is never chosen silently:
``get_backend("local")`` must name it, and creating one warns.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from agentrl.errors import SandboxError
from agentrl.sandbox import _proc
from agentrl.sandbox._common import BASE_ENV, check_files, prlimit_argv, to_result
from agentrl.sandbox.base import ExecResult, Files, Limits, SandboxBackend

__all__ = ["LocalBackend", "UnisolatedWarning"]


class UnisolatedWarning(UserWarning):
    """Code runs on the host without a sandbox."""


class LocalBackend(SandboxBackend):
    """Plain subprocess in a temporary directory, with rlimits via ``prlimit``; unisolated.

    Args:
        python: interpreter for :meth:`run_python` (default: this one, ``sys.executable``).
    """

    name = "local"
    isolated = False

    def __init__(self, *, python: str | None = None) -> None:
        warnings.warn(
            "the 'local' sandbox backend does not isolate programs: they can read host "
            "files and secrets and use the network. Use it for development only; use "
            "'bwrap' (default) or 'docker' for model-written code.",
            UnisolatedWarning,
            stacklevel=2,
        )
        self._python = python or sys.executable
        self._prlimit = shutil.which("prlimit")

    @property
    def python(self) -> str:
        return self._python

    def execute(
        self,
        command: Sequence[str],
        *,
        files: Files | None = None,
        stdin: str | bytes = b"",
        limits: Limits | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult:
        limits = limits or Limits()
        contents = check_files(files)
        data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
        wrapper = prlimit_argv(limits) if self._prlimit else []
        with tempfile.TemporaryDirectory(prefix="agentrl-local-") as workdir:
            for name, body in contents.items():
                path = Path(workdir, name)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(body)
            run_env = {**BASE_ENV, "HOME": workdir, **(env or {})}
            try:
                raw = _proc.run_process(
                    [*wrapper, *command],
                    stdin=data,
                    wall_time=limits.wall_time,
                    output_cap=limits.output,
                    env=run_env,
                    cwd=workdir,
                )
            except OSError as err:
                raise SandboxError(f"could not start {command[0]!r}: {err}") from err
        return to_result(raw, raw.returncode, limits)

    def spawn(
        self, command: Sequence[str], limits: Limits, *, cpu_limit: bool = True
    ) -> subprocess.Popen[bytes]:
        """Start ``command`` with pipes in a temporary work directory (sessions)."""
        workdir = tempfile.mkdtemp(prefix="agentrl-local-session-")
        wrapper = prlimit_argv(limits, cpu=cpu_limit) if self._prlimit else []
        try:
            proc = _proc.spawn(
                [*wrapper, *command], env={**BASE_ENV, "HOME": workdir}, cwd=workdir
            )
        except OSError as err:
            shutil.rmtree(workdir, ignore_errors=True)
            raise SandboxError(f"could not start {command[0]!r}: {err}") from err
        proc.agentrl_cleanup = lambda: shutil.rmtree(workdir, ignore_errors=True)  # type: ignore[attr-defined]
        return proc
