"""The bubblewrap backend: the default on Linux.

Every namespace is unshared (so there is no network), system directories are mounted
read-only, the work directory and /tmp are fresh size-capped tmpfs mounts, the
environment is cleared, and the program runs with rlimits applied inside the sandbox's
user namespace before it starts. When the harness runs as root, bwrap itself is started
as an unprivileged uid (65534, "nobody"): a process whose real uid is 0 is exempt from
RLIMIT_NPROC, so a root-mapped sandbox could not stop a fork bomb. The process-count
limit then applies per sandbox (each has its own user namespace).

:meth:`BwrapBackend.execute` starts bwrap through a small helper process (see
``_spawner_server.py``: no fork of the harness, no ``prlimit`` or shell exec, exact CPU
time); ``prestart=N`` keeps N fresh sandboxes started ahead (see ``_prestart.py``).
Sessions start through :meth:`BwrapBackend.spawn` with ``prlimit`` inside.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath

from agentrl.errors import ConfigError, SandboxError, SandboxUnavailableError
from agentrl.sandbox import _cgroup, _proc
from agentrl.sandbox import _seccomp as seccomp
from agentrl.sandbox._bwrap_util import (
    BWRAP_ENV as _BWRAP_ENV,
)
from agentrl.sandbox._bwrap_util import (
    LimitsDegradedWarning,
    check_bwrap,
    memfd,
    spawn_sandbox,
    warn_degraded,
)
from agentrl.sandbox._cgroup import Cgroup
from agentrl.sandbox._common import (
    BASE_ENV,
    check_files,
    prlimit_argv,
    python_default,
    rlimit_values,
    signal_exit_code,
    to_result,
)
from agentrl.sandbox._prestart import Prestarted, PrestartPool, fits, stub_source
from agentrl.sandbox._spawner import Spawner, get_spawner
from agentrl.sandbox.base import ExecResult, Files, Limits, SandboxBackend

__all__ = ["BwrapBackend", "check_bwrap", "WORKDIR", "LimitsDegradedWarning"]

#: Where the program's writable work directory is mounted inside the sandbox.
WORKDIR = "/work"
_NOBODY = 65534
_START_TIMEOUT = 30.0
# bwrap's pid 1 inside the sandbox reaps the program and reports its exit status to the
# outer bwrap over an eventfd. The seccomp filter denies ptrace, process_vm_* and
# pidfd_getfd; these mounts hide the rest of what a same-uid program could use to reach
# into it (its memory, its descriptors, the same through its thread directory).
_PID1_MASKS = ("--ro-bind", "/dev/null", "/proc/1/mem", "--tmpfs", "/proc/1/task",
               "--tmpfs", "/proc/1/fd", "--tmpfs", "/proc/1/fdinfo",
               "--tmpfs", "/proc/1/map_files")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/alternatives")


class BwrapBackend(SandboxBackend):
    """bubblewrap sandbox: fresh, unshared, read-only system, tmpfs work directory.

    Args:
        python: interpreter used by :meth:`run_python` and sessions (default: the system
            ``/usr/bin/python3``, which sees no host site-packages).
        ro_binds: extra host directories to mount read-only at the same path.
        bwrap: path of the bwrap binary (default: found on PATH).
        check: run the start-up check now (raises :class:`SandboxUnavailableError`).
        prestart: keep this many fresh sandboxes started ahead, waiting for their one
            program (0: off). Start-up then leaves the critical path; each execution still
            gets a brand-new sandbox. Call :meth:`close` when done.
        prestart_limits: the limits prestarted sandboxes are made with (default
            ``Limits()``); a request whose work directory size differs or whose memory,
            process, file-size or open-file limit is higher starts a fresh sandbox instead.
        cgroups: give each sandbox a memory+pids cgroup where the machine allows it
            (default); without one, :class:`LimitsDegradedWarning` says what degrades.
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
        prestart: int = 0,
        prestart_limits: Limits | None = None,
        cgroups: bool = True,
    ) -> None:
        if not isinstance(prestart, int) or isinstance(prestart, bool) or prestart < 0:
            raise ConfigError(f"prestart must be an int >= 0 (0 = off), got {prestart!r}")
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
        self._static: list[str] | None = None
        self.prestart_limits = prestart_limits or Limits()
        self._pool: PrestartPool | None = None
        self.cgroups = _cgroup.support(self.run_as) if cgroups else None
        if self.cgroups is not None and not self.cgroups.ok:
            warn_degraded(self.cgroups.reason)
        if check:
            check_bwrap(self)
        if prestart:
            self._pool = PrestartPool(self._prestart_one, prestart)

    def close(self) -> None:
        """Kill the prestarted sandboxes still waiting (no-op without ``prestart``)."""
        if self._pool is not None:
            self._pool.close()

    def wait_prestarted(self, timeout: float = 30.0) -> bool:
        """Block until the prestart pool is full (benchmarks keep refills out of timings)."""
        return self._pool.wait_full(timeout) if self._pool is not None else True

    @property
    def python(self) -> str:
        return self._python

    def _static_options(self) -> list[str]:
        """The options that are the same for every sandbox (computed once)."""
        if self._static is None:
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
            self._static = argv
        return self._static

    def _options(
        self,
        limits: Limits,
        *,
        file_fds: Mapping[str, int] | None = None,
        info_fd: int | None = None,
        env: Mapping[str, str] | None = None,
        seccomp_fd: int | None,
    ) -> tuple[list[str], list[int]]:
        """bwrap's options (without the command) and the indices of the fd numbers: the
        seccomp filter's first, then the files' in order."""
        argv = [*self._static_options()]
        fd_args = []
        if seccomp_fd is not None:
            fd_args.append(len(argv) + 1)
            argv += ["--seccomp", str(seccomp_fd)]
        size = str(limits.workdir_size)
        argv += [
            "--proc", "/proc", *_PID1_MASKS,
            "--dev", "/dev",
            "--size", size, "--tmpfs", "/dev/shm",
            "--remount-ro", "/dev",
            "--size", size, "--tmpfs", "/tmp",
            "--size", size, "--tmpfs", WORKDIR,
        ]
        for name, fd in (file_fds or {}).items():
            parents = PurePosixPath(name).parents
            for parent in reversed(list(parents)[:-1]):
                argv += ["--dir", f"{WORKDIR}/{parent}"]
            fd_args.append(len(argv) + 1)
            argv += ["--file", str(fd), f"{WORKDIR}/{name}"]
        for key, value in {**BASE_ENV, **(env or {})}.items():
            argv += ["--setenv", key, value]
        if info_fd is not None:
            argv += ["--info-fd", str(info_fd)]
        argv += ["--remount-ro", "/", "--chdir", WORKDIR]
        return argv, fd_args

    def sandbox_argv(
        self,
        command: Sequence[str],
        limits: Limits,
        *,
        file_fds: Mapping[str, int] | None = None,
        info_fd: int | None = None,
        env: Mapping[str, str] | None = None,
        cpu_limit: bool = True,
        seccomp_fd: int | None = None,
        block_fd: int | None = None,
    ) -> list[str]:
        """A bwrap command line that runs ``command`` under ``limits`` (set by ``prlimit``
        inside the sandbox). :meth:`execute` does not use it: its spawner applies the
        limits itself, without that extra exec."""
        argv, _ = self._options(limits, file_fds=file_fds, info_fd=info_fd, env=env,
                                seccomp_fd=seccomp_fd)
        if block_fd is not None:
            argv += ["--block-fd", str(block_fd)]
        return [*argv, "--", *prlimit_argv(limits, cpu=cpu_limit), *command]

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
        if self._pool is not None and fits(limits, self.prestart_limits):
            item = self._pool.take()
            if item is not None:
                result = self._run_prestarted(item, command, contents, data, limits, env)
                if result is not None:
                    return result
        start = time.monotonic()
        group = self._new_cgroup(limits)
        file_fds = {name: memfd(name, body) for name, body in contents.items()}
        filter_fd = seccomp.filter_fd()
        options, fd_args = self._options(limits, file_fds=file_fds, env=env,
                                         seccomp_fd=filter_fd)
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            started = self._spawner.start(
                [*options, "--", *command], insert_at=len(options), fd_args=fd_args,
                file_fds=[filter_fd, *file_fds.values()], env=_BWRAP_ENV,
                rlimits=rlimit_values(limits), stdio=(in_r, out_w, err_w),
                cgroups=group.procs if group else ())
        except SandboxError:
            for fd in (in_w, out_r, err_r):
                os.close(fd)
            if group is not None:
                group.remove()
            raise
        finally:
            for fd in (in_r, out_w, err_w, filter_fd, *file_fds.values()):
                os.close(fd)
        program_ran = True

        def reap() -> tuple[int, float]:
            nonlocal program_ran
            code, cpu, program_ran = started.reap()
            return code, cpu

        try:
            raw = _proc.pump(in_fd=in_w, out_fd=out_r, err_fd=err_r,
                             exit_fd=started.sock.fileno(), stdin=data, start=start,
                             wall_time=limits.wall_time, output_cap=limits.output,
                             kill=started.kill, reap=reap)
        finally:
            os.close(out_r)
            os.close(err_r)
            if not started.finished:
                started.kill()
                started.sock.close()
            oom = group is not None and group.oom_killed()
            if group is not None:
                group.remove()
        # bwrap reports whether it exec'd the program; if not, its own message says why.
        if not program_ran and not raw.timed_out and not raw.output_exceeded:
            message = raw.stderr.decode("utf-8", errors="replace").strip()
            if not message.startswith("bwrap: execvp "):
                raise SandboxError("bwrap failed before the program started: " + message)
            # A command that does not exist is the caller's error, reported like a shell.
            raw.returncode = 127
        code = None if raw.returncode is None else signal_exit_code(raw.returncode)
        return to_result(raw, code, limits, oom=oom)

    def _prestart_one(self) -> Prestarted:
        """Start one sandbox whose stub waits for a request (run by the pool's thread)."""
        group = self._new_cgroup(self.prestart_limits)
        filter_fd = seccomp.filter_fd()
        options, fd_args = self._options(self.prestart_limits, seccomp_fd=filter_fd)
        here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pipes = [os.pipe() for _ in range(3)]  # stdin, stdout, stderr: (read, write)
        command = [self.python, "-I", "-S", "-c", stub_source(), str(there.fileno())]
        try:
            started = self._spawner.start(
                [*options, "--", *command], insert_at=len(options),
                fd_args=[*fd_args, len(options) + len(command)],
                file_fds=[filter_fd, there.fileno()],
                env=_BWRAP_ENV, rlimits=rlimit_values(self.prestart_limits, cpu=False),
                stdio=(pipes[0][0], pipes[1][1], pipes[2][1]),
                cgroups=group.procs if group else ())
        except SandboxError:
            if group is not None:
                group.remove()
            here.close()
            for fd in (pipes[0][1], pipes[1][0], pipes[2][0]):
                os.close(fd)
            raise
        finally:
            there.close()
            for fd in (pipes[0][0], pipes[1][1], pipes[2][1], filter_fd):
                os.close(fd)
        item = Prestarted(started, pipes[0][1], pipes[1][0], pipes[2][0], here, group)
        here.settimeout(_START_TIMEOUT)
        try:
            ready = here.recv(1)
        except OSError:
            ready = b""
        if ready != b"R":
            item.discard()  # reaps it, so its stderr is complete
            raise SandboxError("a prestarted sandbox did not start")
        return item

    def _run_prestarted(self, item: Prestarted, command: Sequence[str],
                        files: Mapping[str, bytes], data: bytes, limits: Limits,
                        env: Mapping[str, str] | None) -> ExecResult | None:
        """Run on a prestarted sandbox; None if it turned out dead before the program ran."""
        start = time.monotonic()
        stub_cpu: float | None = None

        def reap() -> tuple[int, float]:
            nonlocal stub_cpu
            code, cpu, _ = item.started.reap()
            stub_cpu = item.stub_cpu()
            return code, max(0.0, cpu - (stub_cpu or 0.0))

        try:
            if item.cgroup is not None:  # the request's limits may be lower than the pool's
                try:
                    item.cgroup.set_limits(limits.memory, limits.processes)
                except OSError as err:
                    raise SandboxError(f"could not set the sandbox's cgroup limits: {err}"
                                       ) from err
            item.send(command, {**BASE_ENV, "PWD": WORKDIR, **(env or {})}, files,
                      rlimit_values(limits))
        except SandboxError:  # it died just now, before the program: use a fresh one
            item.discard()
            if self._pool is not None:
                self._pool.done()
            return None
        try:
            stdin_w, item.stdin_w = item.stdin_w, -1  # pump() closes it
            raw = _proc.pump(in_fd=stdin_w, out_fd=item.stdout_r, err_fd=item.stderr_r,
                             exit_fd=item.started.sock.fileno(), stdin=data, start=start,
                             wall_time=limits.wall_time, output_cap=limits.output,
                             kill=item.started.kill, reap=reap)
        finally:
            oom = item.cgroup is not None and item.cgroup.oom_killed()
            item.discard()
            if self._pool is not None:
                self._pool.done()
        if stub_cpu is None and not raw.timed_out and not raw.output_exceeded:
            raise SandboxError("the prestarted sandbox failed before the program started: "
                               + raw.stderr.decode("utf-8", errors="replace").strip())
        code = None if raw.returncode is None else signal_exit_code(raw.returncode)
        return to_result(raw, code, limits, oom=oom)

    def _new_cgroup(self, limits: Limits) -> Cgroup | None:
        """A cgroup for one sandbox (None when cgroups are off or unavailable)."""
        if self.cgroups is None or not self.cgroups.ok:
            return None
        try:
            return _cgroup.create(self.run_as, limits.memory, limits.processes)
        except OSError as err:
            raise SandboxError(f"could not create the sandbox's cgroup: {err}") from err

    @property
    def _spawner(self) -> Spawner:
        return get_spawner(self.run_as, self.python)

    def spawn(
        self, command: Sequence[str], limits: Limits, *, cpu_limit: bool = True
    ) -> subprocess.Popen[bytes]:
        """Start ``command`` in a fresh sandbox with stdin/stdout/stderr pipes (sessions).

        With a cgroup, bwrap waits on ``--block-fd`` until its first process is moved in.
        The returned process has ``agentrl_cgroup`` (or None) and ``agentrl_cleanup``.
        """
        return spawn_sandbox(self, command, limits, cpu_limit=cpu_limit)
