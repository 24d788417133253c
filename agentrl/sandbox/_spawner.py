"""Harness side of the bwrap spawner (see ``_spawner_server.py`` for why it exists).

One spawner process per harness process, started on first use under the sandbox uid and
restarted if it died. Each execution gets its own reply socket, so concurrent executions
from many threads never read each other's messages.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import socket
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

from agentrl.errors import SandboxError
from agentrl.sandbox import _cgroup, _proc

__all__ = ["Spawner", "Started", "get_spawner"]

# Longest wait for the spawner's answers (start-up, spawn, final report after the kill).
_REPLY_TIMEOUT = 30.0


@dataclass
class Started:
    """A sandbox the spawner started: its bwrap pid and the socket its report arrives on."""

    pid: int
    sock: socket.socket
    finished: bool = False

    def kill(self) -> None:
        """Ask the spawner to SIGKILL the sandbox (it alone knows the pid is not reused)."""
        if self.finished or select.select([self.sock], [], [], 0)[0]:
            return  # already reported: the sandbox is gone
        try:
            self.sock.send(b"kill", socket.MSG_DONTWAIT)
        except OSError:
            pass

    def reap(self) -> tuple[int, float, bool]:
        """Wait for the final report: (exit code, CPU seconds, whether the program ran)."""
        self.sock.settimeout(_REPLY_TIMEOUT)
        try:
            report = json.loads(self.sock.recv(4096) or b"{}")
        except (OSError, ValueError) as err:
            raise SandboxError(f"the bwrap spawner did not report on the sandbox: {err}") from err
        finally:
            self.finished = True
            self.sock.close()
        if "exit" not in report:
            raise SandboxError("the bwrap spawner closed without reporting on the sandbox")
        return int(report["exit"]), float(report["cpu"]), bool(report["started"])


class Spawner:
    """Starts bwrap sandboxes through a helper process running as ``run_as``.

    Args:
        run_as: uid (and gid) of the helper and so of every sandbox; None keeps ours.
        python: interpreter for the helper (one that ``run_as`` may execute, e.g. the
            system ``/usr/bin/python3``; the harness's own may live under /root).
    """

    def __init__(self, run_as: int | None, python: str) -> None:
        self.run_as = run_as
        self.python = python
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._owner = 0

    def _ensure(self) -> socket.socket:
        with self._lock:
            alive = self._proc is not None and self._proc.poll() is None
            if self._control is not None and alive and self._owner == os.getpid():
                return self._control
            self._stop()
            here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            source = resources.files("agentrl.sandbox").joinpath("_spawner_server.py").read_text()
            extra: dict[str, object] = {}
            if self.run_as is not None and os.geteuid() == 0:
                extra = {"user": self.run_as, "group": self.run_as, "extra_groups": []}
            try:
                proc = subprocess.Popen(
                    [self.python, "-I", "-S", "-c", source, str(there.fileno())],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, pass_fds=[there.fileno()],
                    env={"PATH": "/usr/bin:/bin"}, cwd="/", start_new_session=True,
                    **extra,  # type: ignore[arg-type]
                )
            except OSError as err:
                here.close()
                raise SandboxError(f"could not start the bwrap spawner: {err}") from err
            finally:
                there.close()
            assert proc.stdout is not None
            line = proc.stdout.readline()
            proc.stdout.close()
            leaf = _cgroup.spawner_leaf(self.run_as)
            if leaf is not None:  # cgroup v2: see spawner_leaf
                try:
                    with open(leaf, "w") as handle:
                        handle.write(str(proc.pid))
                except OSError:
                    pass  # sandboxes then fail to start with a clear error
            if line != b"ready\n":
                here.close()
                proc.kill()
                proc.wait()
                raise SandboxError("the bwrap spawner failed to start (see stderr)")
            self._proc, self._control, self._owner = proc, here, os.getpid()
            return here

    def _stop(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._proc is not None:
            if self._owner == os.getpid():
                try:
                    self._proc.wait(timeout=5)  # it exits when the control socket closes
                except subprocess.TimeoutExpired:
                    _proc.kill_group(self._proc.pid)
                    self._proc.wait()
            self._proc = None

    def close(self) -> None:
        """Stop the helper (its sandboxes die with it)."""
        with self._lock:
            self._stop()

    def start(
        self,
        argv: Sequence[str],
        *,
        insert_at: int,
        fd_args: Sequence[int],
        file_fds: Sequence[int],
        env: Mapping[str, str],
        rlimits: Sequence[tuple[int, int, int]],
        stdio: tuple[int, int, int],
        cgroups: Sequence[str] = (),
    ) -> Started:
        """Start ``argv`` (bwrap) with ``stdio`` (stdin, stdout, stderr) as its 0, 1, 2.

        ``argv[i]`` for ``i`` in ``fd_args`` names ``file_fds`` in order (renumbered in the
        helper); the helper adds its own ``--info-fd``/``--block-fd``/``--json-status-fd``
        at ``insert_at``, applies ``rlimits`` (resource, soft, hard) to the sandbox and
        writes its first process's pid to each ``cgroup.procs`` path in ``cgroups``.
        Raises SandboxError if the sandbox cannot be started.
        """
        control = self._ensure()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        request = {"argv": list(argv), "insert_at": insert_at, "fd_args": list(fd_args),
                   "env": dict(env), "rlimits": [list(r) for r in rlimits],
                   "cgroups": list(cgroups)}
        try:
            with self._lock:
                socket.send_fds(control, [json.dumps(request).encode()],
                                [theirs.fileno(), *stdio, *file_fds])
        except OSError as err:
            mine.close()
            raise SandboxError(f"the bwrap spawner is gone: {err}") from err
        finally:
            theirs.close()
        mine.settimeout(_REPLY_TIMEOUT)
        try:
            reply = json.loads(mine.recv(4096) or b"{}")
        except (OSError, ValueError) as err:
            mine.close()
            raise SandboxError(f"the bwrap spawner did not answer: {err}") from err
        if "pid" not in reply:
            mine.close()
            raise SandboxError(str(reply.get("error", "the bwrap spawner closed the request")))
        mine.settimeout(None)
        return Started(int(reply["pid"]), mine)


_spawners: dict[tuple[int | None, str], Spawner] = {}
_spawners_lock = threading.Lock()


def get_spawner(run_as: int | None, python: str) -> Spawner:
    """The process-wide spawner for ``run_as`` and ``python`` (created on first use)."""
    with _spawners_lock:
        if (run_as, python) not in _spawners:
            _spawners[run_as, python] = Spawner(run_as, python)
        return _spawners[run_as, python]


@atexit.register
def _close_all() -> None:
    for spawner in list(_spawners.values()):
        spawner.close()
