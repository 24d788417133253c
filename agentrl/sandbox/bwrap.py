"""The bubblewrap backend: the default on Linux.

Every namespace is unshared (so there is no network), system directories are mounted
read-only, the work directory and /tmp are fresh size-capped tmpfs mounts, the
environment is cleared, and the program runs with rlimits set by ``prlimit`` inside the
sandbox. When the harness runs as root, bwrap itself is started as an unprivileged
uid (65534, "nobody"): a process whose real uid is 0 is exempt from RLIMIT_NPROC, so a
root-mapped sandbox could not stop a fork bomb. The process-count limit then applies
per sandbox (each has its own user namespace).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath

from agentrl.errors import SandboxError, SandboxUnavailableError
from agentrl.sandbox import _proc
from agentrl.sandbox._common import (
    BASE_ENV,
    check_files,
    prlimit_argv,
    python_default,
    signal_exit_code,
    to_result,
)
from agentrl.sandbox.base import ExecResult, Files, Limits, SandboxBackend

__all__ = ["BwrapBackend", "check_bwrap", "WORKDIR"]

#: Where the program's writable work directory is mounted inside the sandbox.
WORKDIR = "/work"
_NOBODY = 65534
# bwrap's own environment: its pid-1 helper inside the sandbox keeps it, and any program
# there can read it from /proc/1/environ, so the host's environment must never reach it.
_BWRAP_ENV = {"PATH": "/usr/bin:/bin"}
_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/alternatives")
_checked: dict[tuple[str, str], str | None] = {}
_check_lock = threading.Lock()


class BwrapBackend(SandboxBackend):
    """bubblewrap sandbox: fresh, unshared, read-only system, tmpfs work directory.

    Args:
        python: interpreter used by :meth:`run_python` and sessions (default: the system
            ``/usr/bin/python3``, which sees no host site-packages).
        ro_binds: extra host directories to mount read-only at the same path.
        bwrap: path of the bwrap binary (default: found on PATH).
        check: run the start-up check now (raises :class:`SandboxUnavailableError`).
    """

    name = "bwrap"
    isolated = True

    def __init__(
        self,
        *,
        python: str | None = None,
        ro_binds: Sequence[str] = (),
        bwrap: str | None = None,
        check: bool = True,
    ) -> None:
        self._python = python or python_default()
        self.ro_binds = tuple(ro_binds)
        found = bwrap or shutil.which("bwrap")
        if found is None or not os.access(found, os.X_OK):
            raise SandboxUnavailableError(
                "bubblewrap is not installed: install the Debian package 'bubblewrap' "
                "(apt-get install bubblewrap), or choose another backend"
            )
        self.bwrap = found
        self.run_as = _NOBODY if os.geteuid() == 0 else None
        if check:
            check_bwrap(self)

    @property
    def python(self) -> str:
        return self._python

    def sandbox_argv(
        self,
        command: Sequence[str],
        limits: Limits,
        *,
        file_fds: Mapping[str, int] | None = None,
        times_fd: int | None = None,
        info_fd: int | None = None,
        env: Mapping[str, str] | None = None,
        cpu_limit: bool = True,
    ) -> list[str]:
        """The full bwrap command line that runs ``command`` under ``limits``."""
        argv = [
            self.bwrap,
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--cap-drop", "ALL",
            "--hostname", "sandbox",
            "--clearenv",
            "--ro-bind", "/usr", "/usr",
        ]
        for link in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
            if os.path.islink(f"/{link}"):
                argv += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
            elif os.path.isdir(f"/{link}"):
                argv += ["--ro-bind", f"/{link}", f"/{link}"]
        for path in _ETC_FILES:
            argv += ["--ro-bind-try", path, path]
        for path in self.ro_binds:
            argv += ["--ro-bind", path, path]
        argv += [
            "--proc", "/proc",
            "--dev", "/dev",
            "--size", str(limits.workdir_size), "--tmpfs", "/tmp",
            "--size", str(limits.workdir_size), "--tmpfs", WORKDIR,
        ]
        for name, fd in (file_fds or {}).items():
            parents = PurePosixPath(name).parents
            for parent in reversed(list(parents)[:-1]):
                argv += ["--dir", f"{WORKDIR}/{parent}"]
            argv += ["--file", str(fd), f"{WORKDIR}/{name}"]
        for key, value in {**BASE_ENV, **(env or {})}.items():
            argv += ["--setenv", key, value]
        if info_fd is not None:
            argv += ["--info-fd", str(info_fd)]
        argv += ["--chdir", WORKDIR, "--"]
        if times_fd is not None:
            # A shell parent reports the program's CPU time (bwrap's own waits lose it);
            # the program itself does not inherit that descriptor.
            # bash, not dash: dash cannot redirect descriptors above 9.
            script = f'"$@" {times_fd}>&-; rc=$?; times >&{times_fd}; exit $rc'
            argv += ["/bin/bash", "--norc", "--noprofile", "-c", script, "bash"]
        return [*argv, *prlimit_argv(limits, cpu=cpu_limit), *command]

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
        file_fds = {name: _memfd(name, body) for name, body in contents.items()}
        times_r, times_w = os.pipe()
        info_r, info_w = os.pipe()
        child_fds = [*file_fds.values(), times_w, info_w]

        def close_child_fds() -> None:
            for fd in child_fds:
                os.close(fd)
            child_fds.clear()

        argv = self.sandbox_argv(
            command, limits, file_fds=file_fds, times_fd=times_w, info_fd=info_w, env=env
        )
        try:
            raw = _proc.run_process(
                argv,
                stdin=data,
                wall_time=limits.wall_time,
                output_cap=limits.output,
                pass_fds=child_fds,
                env=_BWRAP_ENV,
                run_as=self.run_as,
                after_spawn=close_child_fds,
            )
            _wait_sandbox_gone(info_r)
            times = os.read(times_r, 4096)
        except OSError as err:
            raise SandboxError(f"could not start bwrap ({self.bwrap}): {err}") from err
        finally:
            close_child_fds()
            os.close(times_r)
            os.close(info_r)
        # The shell inside reports CPU times after the program; no report, exit code 1 and
        # bwrap's own message mean the sandbox never started.
        if not times and raw.returncode == 1 and raw.stderr.startswith(b"bwrap: "):
            raise SandboxError(
                "bwrap failed before the program started: "
                + raw.stderr.decode("utf-8", errors="replace").strip()
            )
        code = None if raw.returncode is None else signal_exit_code(raw.returncode)
        raw.cpu_time = max(raw.cpu_time, _children_cpu(times))
        return to_result(raw, code, limits)

    def spawn(
        self, command: Sequence[str], limits: Limits, *, cpu_limit: bool = True
    ) -> subprocess.Popen[bytes]:
        """Start ``command`` in a fresh sandbox with stdin/stdout/stderr pipes (sessions)."""
        info_r, info_w = os.pipe()
        try:
            proc = _proc.spawn(
                self.sandbox_argv(command, limits, cpu_limit=cpu_limit, info_fd=info_w),
                pass_fds=[info_w],
                env=_BWRAP_ENV,
                run_as=self.run_as,
            )
        except OSError as err:
            os.close(info_r)
            raise SandboxError(f"could not start bwrap ({self.bwrap}): {err}") from err
        finally:
            os.close(info_w)

        def cleanup() -> None:  # runs once bwrap itself is dead
            try:
                _wait_sandbox_gone(info_r)
            finally:
                os.close(info_r)

        proc.agentrl_cleanup = cleanup  # type: ignore[attr-defined]
        return proc


def _memfd(name: str, body: bytes) -> int:
    fd = os.memfd_create(os.path.basename(name) or "file", 0)
    view = memoryview(body)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _wait_sandbox_gone(info_r: int) -> None:
    """Wait for the sandbox's pid 1 (which outlives bwrap briefly while the kernel kills the
    rest of its pid namespace), so that nothing of the sandbox is left when we return."""
    try:
        info = json.loads(os.read(info_r, 4096) or b"{}")
    except ValueError:
        return
    pid = info.get("child-pid") if isinstance(info, dict) else None
    if isinstance(pid, int):
        _proc.wait_gone(pid)


def _children_cpu(times: bytes) -> float:
    """Parse the children line of the shell's ``times`` ("0m0.38s 0m0.01s")."""
    lines = times.decode("ascii", errors="replace").split("\n")
    if len(lines) < 2:
        return 0.0
    total = 0.0
    for part in lines[1].split():
        minutes, _, seconds = part.rstrip("s").partition("m")
        try:
            total += float(minutes) * 60 + float(seconds)
        except ValueError:
            return 0.0
    return total


def check_bwrap(backend: BwrapBackend) -> None:
    """Start-up check: run ``print(1)`` in the sandbox once per (bwrap, python) pair.

    Raises:
        SandboxUnavailableError: with what is missing and how to fix it.
    """
    key = (backend.bwrap, backend.python)
    with _check_lock:
        if key not in _checked:
            _checked[key] = _probe(backend)
    problem = _checked[key]
    if problem is not None:
        raise SandboxUnavailableError(problem)


def _probe(backend: BwrapBackend) -> str | None:
    if not os.path.exists("/usr/bin/prlimit"):
        return ("/usr/bin/prlimit is missing (it sets the rlimits inside the sandbox): "
                "install the Debian package util-linux")
    if not os.access(backend.python, os.X_OK):
        return f"the sandbox interpreter {backend.python} does not exist or is not executable"
    try:
        result = backend.execute([backend.python, "-I", "-c", "print(1)"],
                                 limits=Limits(wall_time=20.0))
    except SandboxError as err:
        hint = ""
        text = str(err)
        if "uid map" in text or "namespace" in text or "Operation not permitted" in text:
            hint = (" -- user namespaces look disabled: enable them (sysctl "
                    "kernel.unprivileged_userns_clone=1 / user.max_user_namespaces>0, or "
                    "allow bwrap in AppArmor), or use the docker backend")
        return f"bubblewrap cannot create a sandbox on this machine: {text}{hint}"
    if result.stdout.strip() != "1":
        info = json.dumps({"status": result.status.value, "stderr": result.stderr[-500:]})
        return f"bubblewrap started but python inside it failed: {info}"
    return None
