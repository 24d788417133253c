"""A pool of prestarted, never reused bwrap sandboxes (``BwrapBackend(prestart=N)``).

Each pooled sandbox is fully set up (namespaces, mounts, rlimits) and runs a small stub
(``_prestart_stub.py``) that waits for one request; a background thread keeps the pool
full. Taking one moves sandbox start-up off the critical path: an execution then costs
about one exec of the program. Every execution still gets a brand-new sandbox.
"""

from __future__ import annotations

import base64
import json
import os
import select
import socket
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from importlib import resources

from agentrl.errors import SandboxError
from agentrl.sandbox._cgroup import Cgroup
from agentrl.sandbox._spawner import Started
from agentrl.sandbox.base import Limits

__all__ = ["Prestarted", "PrestartPool", "stub_source", "fits"]


def stub_source() -> str:
    """Source of the stub that runs first in a prestarted sandbox."""
    return resources.files("agentrl.sandbox").joinpath("_prestart_stub.py").read_text()


def fits(limits: Limits, pooled: Limits) -> bool:
    """Whether a request with ``limits`` may use a sandbox prestarted with ``pooled``:
    the work directory size is fixed at start-up, and the stub can only lower limits."""
    if limits.workdir_size != pooled.workdir_size:
        return False
    rlimited = ("memory", "processes", "file_size", "open_files")
    return all(getattr(limits, f.name) <= getattr(pooled, f.name)
               for f in fields(Limits) if f.name in rlimited)


@dataclass
class Prestarted:
    """One waiting sandbox: its bwrap, its stdio (our ends) and the stub's socket."""

    started: Started
    stdin_w: int
    stdout_r: int
    stderr_r: int
    control: socket.socket
    cgroup: Cgroup | None = None

    def send(self, argv: Sequence[str], env: Mapping[str, str], files: Mapping[str, bytes],
             rlimits: Sequence[tuple[int, int, int]]) -> None:
        """Hand the stub its one request (it then execs the program)."""
        request = {"argv": list(argv), "env": dict(env), "rlimits": [list(r) for r in rlimits],
                   "files": {k: base64.b64encode(v).decode() for k, v in files.items()}}
        try:
            self.control.sendall(json.dumps(request).encode())
            self.control.shutdown(socket.SHUT_WR)
        except OSError as err:
            raise SandboxError(f"the prestarted sandbox is gone: {err}") from err

    def stub_cpu(self) -> float | None:
        """The stub's CPU seconds before it exec'd the program; None if it never did."""
        try:
            self.control.settimeout(5.0)
            report = json.loads(self.control.recv(4096) or b"{}")
        except (OSError, ValueError):
            return None
        return float(report["cpu"]) if "cpu" in report else None

    def alive(self) -> bool:
        """Still waiting for its request (neither a report nor EOF from its sockets)."""
        try:
            ready, _, _ = select.select([self.started.sock, self.control], [], [], 0)
        except (OSError, ValueError):
            return False
        return not ready

    def discard(self) -> None:
        """Kill it (if alive) and release everything it holds."""
        self.started.kill()
        if not self.started.finished:
            try:
                self.started.reap()
            except SandboxError:
                pass
        self.close_fds()
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None

    def close_fds(self) -> None:
        for fd in (self.stdin_w, self.stdout_r, self.stderr_r):
            if fd >= 0:
                os.close(fd)
        self.stdin_w = self.stdout_r = self.stderr_r = -1
        self.control.close()


class PrestartPool:
    """Keeps ``size`` prestarted sandboxes ready, made by ``start`` (in a thread).

    Args:
        start: makes one :class:`Prestarted` (raises SandboxError on failure).
        size: how many to keep ready.
    """

    def __init__(self, start: Callable[[], Prestarted], size: int) -> None:
        self._start = start
        self.size = size
        self._ready: deque[Prestarted] = deque()
        self._in_use = 0
        self._cond = threading.Condition()
        self._closed = False
        self.error: SandboxError | None = None
        self._thread = threading.Thread(target=self._fill, name="agentrl-prestart", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        while True:
            with self._cond:
                # A taken sandbox is replaced once its execution is over (done()), so
                # the refill does not compete with that execution for the CPU.
                while not self._closed and len(self._ready) + self._in_use >= self.size:
                    self._cond.wait()
                if self._closed:
                    return
            try:
                item = self._start()
            except SandboxError as err:
                with self._cond:  # stop refilling; take() falls back to fresh sandboxes
                    self.error = err
                    self._closed = True
                    self._cond.notify_all()
                return
            with self._cond:
                if self._closed:
                    item.discard()
                    return
                self._ready.append(item)
                self._cond.notify_all()

    def take(self) -> Prestarted | None:
        """A ready sandbox, or None when none is ready (the caller starts a fresh one).
        Sandboxes that died while waiting (e.g. with the spawner) are dropped."""
        while True:
            with self._cond:
                if not self._ready:
                    return None
                item = self._ready.popleft()
                if item.alive():
                    self._in_use += 1
                    return item
                self._cond.notify_all()  # refill
            item.discard()

    def done(self) -> None:
        """The execution on a taken sandbox is over: start its replacement."""
        with self._cond:
            self._in_use -= 1
            self._cond.notify_all()

    def wait_full(self, timeout: float = 30.0) -> bool:
        """Block until the pool is full again (benchmarks: keep refills out of timings)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._closed or len(self._ready) >= self.size, timeout)

    def close(self) -> None:
        """Stop refilling and kill the sandboxes still waiting."""
        with self._cond:
            self._closed = True
            items = list(self._ready)
            self._ready.clear()
            self._cond.notify_all()
        self._thread.join(timeout=30)
        for item in items:
            item.discard()
