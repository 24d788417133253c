"""Run one child process with a wall-clock deadline and capped output (shared by backends).

The child gets its own process group; on timeout or too much output the whole group is
killed with SIGKILL. One ``select`` loop feeds stdin, drains stdout/stderr and watches a
pidfd, so no threads are needed per execution.
"""

from __future__ import annotations

import os
import select
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["RawOutcome", "run_process", "pump", "kill_group", "spawn", "terminate", "wait_gone"]

_CHUNK = 65536
# After the main process exits, how long leftover holders of the pipes may keep them open.
_DRAIN_GRACE = 0.2


@dataclass
class RawOutcome:
    """What happened to the process, before a backend maps it to a Status."""

    stdout: bytes
    stderr: bytes
    stdout_total: int
    stderr_total: int
    returncode: int | None
    wall_time: float
    cpu_time: float
    timed_out: bool
    output_exceeded: bool


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (ignored when already gone)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait until process ``pid`` (not necessarily our child) has exited."""
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def terminate(proc: subprocess.Popen[bytes]) -> None:
    """Kill a spawned sandbox and everything in it, reap it, close its pipes, clean up."""
    kill_group(proc.pid)
    proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
    cleanup = getattr(proc, "agentrl_cleanup", None)
    if callable(cleanup):
        cleanup()


def _as_user_kwargs(run_as: int | None) -> dict[str, object]:
    if run_as is None or os.geteuid() != 0:
        return {}
    return {"user": run_as, "group": run_as, "extra_groups": []}


def spawn(
    argv: Sequence[str],
    *,
    pass_fds: Sequence[int] = (),
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    run_as: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with three pipes in a new session (process group = its pid)."""
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=tuple(pass_fds),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
        close_fds=True,
        **_as_user_kwargs(run_as),  # type: ignore[arg-type]
    )


def run_process(
    argv: Sequence[str],
    *,
    stdin: bytes,
    wall_time: float,
    output_cap: int,
    pass_fds: Sequence[int] = (),
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    run_as: int | None = None,
    after_spawn: object = None,
) -> RawOutcome:
    """Run ``argv`` to completion under a deadline; raises OSError if it cannot start.

    ``after_spawn`` (a callable or None) runs right after the process started, e.g. to
    close file descriptors only the child needs.
    """
    start = time.monotonic()
    proc = spawn(argv, pass_fds=pass_fds, env=env, cwd=cwd, run_as=run_as)
    if callable(after_spawn):
        after_spawn()
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    in_fd = os.dup(proc.stdin.fileno())  # pump() owns and closes it
    proc.stdin.close()
    pidfd = os.pidfd_open(proc.pid)

    def reap() -> tuple[int, float]:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        return proc.returncode, usage.ru_utime + usage.ru_stime

    try:
        return pump(in_fd=in_fd, out_fd=proc.stdout.fileno(), err_fd=proc.stderr.fileno(),
                    exit_fd=pidfd, stdin=stdin, start=start, wall_time=wall_time,
                    output_cap=output_cap, kill=lambda: kill_group(proc.pid), reap=reap)
    finally:
        os.close(pidfd)
        proc.stdout.close()
        proc.stderr.close()


def pump(
    *,
    in_fd: int,
    out_fd: int,
    err_fd: int,
    exit_fd: int,
    stdin: bytes,
    start: float,
    wall_time: float,
    output_cap: int,
    kill: Callable[[], None],
    reap: Callable[[], tuple[int, float]],
) -> RawOutcome:
    """Feed stdin, collect capped output and watch ``exit_fd`` (readable once the process
    has exited) until the deadline; then ``kill()`` whatever is left and ``reap()`` it for
    (return code, CPU seconds). Closes ``in_fd``; the other descriptors stay open."""
    deadline = start + wall_time
    bufs: dict[int, bytearray] = {out_fd: bytearray(), err_fd: bytearray()}
    totals: dict[int, int] = {out_fd: 0, err_fd: 0}
    timed_out = exceeded = False
    sel = selectors.DefaultSelector()
    in_open = True
    try:
        for fd in (out_fd, err_fd, exit_fd):
            sel.register(fd, selectors.EVENT_READ)
        pending = memoryview(stdin)
        if pending:
            os.set_blocking(in_fd, False)
            sel.register(in_fd, selectors.EVENT_WRITE)
        else:
            os.close(in_fd)
            in_open = False
        exited_at: float | None = None
        open_streams = 2
        while open_streams:
            now = time.monotonic()
            limit = deadline if exited_at is None else min(deadline, exited_at + _DRAIN_GRACE)
            if now >= limit:
                timed_out = exited_at is None
                break
            for key, _ in sel.select(timeout=limit - now):
                fd = key.fd
                if fd == exit_fd:
                    exited_at = time.monotonic()
                    sel.unregister(exit_fd)
                elif fd == in_fd:
                    try:
                        sent = os.write(in_fd, pending[:_CHUNK])
                    except (BrokenPipeError, BlockingIOError) as err:
                        sent = 0 if isinstance(err, BlockingIOError) else len(pending)
                    pending = pending[sent:]
                    if not pending:
                        sel.unregister(in_fd)
                        os.close(in_fd)
                        in_open = False
                else:
                    chunk = os.read(fd, _CHUNK)
                    if not chunk:
                        sel.unregister(fd)
                        open_streams -= 1
                        continue
                    totals[fd] += len(chunk)
                    room = output_cap - len(bufs[fd])
                    if room > 0:
                        bufs[fd] += chunk[:room]
                    if totals[fd] > output_cap:
                        exceeded = True
                        open_streams = 0
                        break
        # Whatever the reason we left the loop, nothing of this sandbox may survive it.
        kill()
        returncode, cpu_time = reap()
    finally:
        sel.close()
        if in_open:
            os.close(in_fd)
    return RawOutcome(
        stdout=bytes(bufs[out_fd]),
        stderr=bytes(bufs[err_fd]),
        stdout_total=totals[out_fd],
        stderr_total=totals[err_fd],
        returncode=None if timed_out or exceeded else returncode,
        wall_time=time.monotonic() - start,
        cpu_time=cpu_time,
        timed_out=timed_out,
        output_exceeded=exceeded,
    )
