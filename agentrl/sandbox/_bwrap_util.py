"""Small helpers of the bwrap backend: fds, bwrap's ``--info-fd`` and the start-up warning."""

from __future__ import annotations

import json
import os
import select
import subprocess
import threading
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from agentrl.errors import SandboxError, SandboxUnavailableError
from agentrl.sandbox import _cgroup, _proc
from agentrl.sandbox import _seccomp as seccomp
from agentrl.sandbox.base import Limits

if TYPE_CHECKING:
    from agentrl.sandbox.bwrap import BwrapBackend

__all__ = ["LimitsDegradedWarning", "warn_degraded", "memfd", "read_child_pid",
           "wait_sandbox_gone", "spawn_sandbox", "check_bwrap", "BWRAP_ENV"]

# bwrap's own environment: its pid-1 helper inside the sandbox keeps it, and any program
# there can read it from /proc/1/environ, so the host's environment must never reach it.
BWRAP_ENV = {"PATH": "/usr/bin:/bin"}
_checked: dict[tuple[str, str], str | None] = {}

_lock = threading.Lock()


class LimitsDegradedWarning(UserWarning):
    """Sandboxes run without a cgroup: some limits are weaker (the message says which)."""


_warned: list[str] = []


def warn_degraded(reason: str) -> None:
    """Warn once per process that sandboxes have no cgroup, and what that costs."""
    with _lock:
        if _warned:
            return
        _warned.append(reason)
    warnings.warn(f"agentrl sandbox: no per-sandbox cgroup ({reason}). {_cgroup.DEGRADED}.",
                  LimitsDegradedWarning, stacklevel=3)


def read_child_pid(info_r: int, timeout: float = 30.0) -> int | None:
    """The sandbox's first process (host pid) from bwrap's ``--info-fd`` JSON."""
    data, deadline = b"", time.monotonic() + timeout
    while not data.rstrip().endswith(b"}"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([info_r], [], [], left)[0]:
            return None
        chunk = os.read(info_r, 4096)
        if not chunk:
            break
        data += chunk
    try:
        pid = json.loads(data).get("child-pid")
    except (ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) else None


def memfd(name: str, body: bytes) -> int:
    fd = os.memfd_create(os.path.basename(name) or "file", 0)
    view = memoryview(body)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def wait_sandbox_gone(info_r: int) -> None:
    """Wait for the sandbox's pid 1 (which outlives bwrap briefly while the kernel kills the
    rest of its pid namespace), so that nothing of the sandbox is left when we return."""
    try:
        info = json.loads(os.read(info_r, 4096) or b"{}")
    except ValueError:
        return
    pid = info.get("child-pid") if isinstance(info, dict) else None
    if isinstance(pid, int):
        _proc.wait_gone(pid)


def spawn_sandbox(backend: BwrapBackend, command: Sequence[str], limits: Limits, *,
                  cpu_limit: bool = True) -> subprocess.Popen[bytes]:
    """:meth:`BwrapBackend.spawn`: a sandbox with stdin/stdout/stderr pipes (sessions).

    With a cgroup, bwrap waits on ``--block-fd`` until its first process is moved in.
    The returned process has ``agentrl_cgroup`` (or None) and ``agentrl_cleanup``.
    """
    group = backend._new_cgroup(limits)
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe() if group is not None else (None, None)
    filter_fd = seccomp.filter_fd()
    argv = backend.sandbox_argv(command, limits, cpu_limit=cpu_limit, info_fd=info_w,
                             seccomp_fd=filter_fd, block_fd=block_r)
    try:
        proc = _proc.spawn(argv, pass_fds=[fd for fd in (info_w, filter_fd, block_r)
                                           if fd is not None],
                           env=BWRAP_ENV, run_as=backend.run_as)
    except OSError as err:
        for fd in (info_r, block_w):
            if fd is not None:
                os.close(fd)
        if group is not None:
            group.remove()
        raise SandboxError(f"could not start bwrap ({backend.bwrap}): {err}") from err
    finally:
        for fd in (info_w, filter_fd, block_r):
            if fd is not None:
                os.close(fd)
    init = None
    if group is not None and block_w is not None:
        init = read_child_pid(info_r)
        try:
            if init is None:
                raise OSError("bwrap reported no child pid")
            group.add(init)
            os.write(block_w, b"x")
        except OSError as err:
            _proc.kill_group(proc.pid)
            proc.wait()
            os.close(info_r)
            group.remove()
            raise SandboxError(f"could not move the sandbox into its cgroup: {err}"
                               ) from err
        finally:
            os.close(block_w)

    def cleanup() -> None:  # runs once bwrap itself is dead
        try:
            if init is None:
                wait_sandbox_gone(info_r)
            else:
                _proc.wait_gone(init)
        finally:
            os.close(info_r)
            if group is not None:
                group.remove()

    proc.agentrl_cgroup = group  # type: ignore[attr-defined]
    proc.agentrl_cleanup = cleanup  # type: ignore[attr-defined]
    return proc


def check_bwrap(backend: BwrapBackend) -> None:
    """Start-up check: run ``print(1)`` in the sandbox once per (bwrap, python) pair.

    Raises:
        SandboxUnavailableError: with what is missing and how to fix it.
    """
    key = (backend.bwrap, backend.python)
    with _lock:
        if key not in _checked:
            _checked[key] = _probe(backend)
    problem = _checked[key]
    if problem is not None:
        raise SandboxUnavailableError(problem)


def _probe(backend: BwrapBackend) -> str | None:
    if not os.path.exists("/usr/bin/prlimit"):
        return ("/usr/bin/prlimit is missing (it sets the rlimits of persistent sessions): "
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
