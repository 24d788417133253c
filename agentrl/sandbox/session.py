"""Persistent sandboxed Python sessions and a warm pool of them.

A :class:`Session` is one interpreter in one sandbox, kept alive across calls so that a
multi-turn agent can define a variable in turn 1 and use it in turn 3. Each call has its
own limits (wall time, CPU time, output); memory, processes and file size are fixed for
the session's lifetime. A call that overruns is interrupted inside the interpreter (the
state survives); if the interpreter does not come back in time it is killed and the next
call starts a fresh one (``ExecResult.stderr`` says so).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import select
import signal
import subprocess
import threading
import time
from importlib import resources
from typing import Protocol

from agentrl.errors import ConfigError, InvalidActionError, SandboxError
from agentrl.sandbox._channel import TIMEOUT, Channel
from agentrl.sandbox._proc import terminate
from agentrl.sandbox.base import ExecResult, Limits, SandboxBackend, Status

__all__ = ["Session", "SessionPool", "SpawningBackend"]

# Extra seconds the host waits past a call's wall time before killing the interpreter.
_GRACE = 2.0
_START_TIMEOUT = 30.0
_LOST = ("[session] the interpreter was {why}; its state was lost and the next call "
         "starts a fresh one\n")


class SpawningBackend(Protocol):
    """A backend that can start a long-lived sandboxed process with pipes."""

    python: str

    def spawn(self, command: list[str], limits: Limits, *,
              cpu_limit: bool = True) -> subprocess.Popen[bytes]: ...


def _server_source() -> str:
    return resources.files("agentrl.sandbox").joinpath("_session_server.py").read_text()


class Session:
    """One persistent sandboxed Python interpreter. Use as a context manager or ``close()``.

    Args:
        backend: a backend with ``spawn`` (bwrap, local).
        limits: per-call wall/CPU/output limits and per-session memory/process limits.
    """

    def __init__(self, backend: SandboxBackend, limits: Limits | None = None) -> None:
        if not hasattr(backend, "spawn"):
            raise SandboxError(f"the {backend.name!r} backend cannot host persistent sessions")
        self.backend = backend
        self.limits = limits or Limits()
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._channel: Channel | None = None
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._closed = False
        self._started_once = False

    @property
    def alive(self) -> bool:
        """Whether an interpreter is running now."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the interpreter (done lazily by :meth:`run`); raises SandboxError on failure."""
        if self._closed:
            raise SandboxError("this session was closed; open a new one")
        if self.alive:
            return
        self._kill()
        command = [self.backend.python, "-I", "-c", _server_source()]
        proc = self.backend.spawn(command, self.limits, cpu_limit=False)  # type: ignore[attr-defined]
        self._proc, self._channel = proc, Channel(proc)
        hello = self._channel.read(time.monotonic() + _START_TIMEOUT)
        if not isinstance(hello, dict) or not hello.get("ready"):
            err = b""
            if proc.stderr is not None and select.select([proc.stderr], [], [], 0.5)[0]:
                err = os.read(proc.stderr.fileno(), 4096)
            self._kill()
            raise SandboxError(
                "the sandboxed interpreter did not start: "
                + (err.decode("utf-8", errors="replace").strip() or f"got {hello!r}")
            )
        if self._started_once:
            self.restarts += 1
        self._started_once = True

    def run(self, code: str, *, limits: Limits | None = None) -> ExecResult:
        """Run ``code`` in the session; the last expression's repr is printed, as in a REPL.

        ``limits`` overrides the per-call limits (wall time, CPU time, output) only.
        """
        if not isinstance(code, str):
            raise InvalidActionError(f"code must be str, got {type(code).__name__}")
        call = limits or self.limits
        with self._lock:
            self.start()
            request = {"id": next(self._ids), "code": code, "wall_time": call.wall_time,
                       "cpu_time": call.cpu_time, "output": call.output}
            began = time.monotonic()
            assert self._channel is not None
            reply = None
            if self._channel.write(request):
                reply = self._channel.read(began + call.wall_time + _GRACE)
            wall = time.monotonic() - began
            if isinstance(reply, dict) and reply.get("id") == request["id"]:
                result = self._result(reply, call, wall)
                if result is not None:
                    return result
                reply = None  # malformed: the interpreter's protocol is broken
            return self._lost(reply, wall)

    async def arun(self, code: str, *, limits: Limits | None = None) -> ExecResult:
        """Async :meth:`run`."""
        return await asyncio.to_thread(self.run, code, limits=limits)

    def close(self) -> None:
        """Kill the interpreter and its sandbox; the session cannot be used afterwards."""
        with self._lock:
            self._closed = True
            self._kill()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_proc", None) is not None:
            self._kill()

    # -- internals ---------------------------------------------------------------------

    def _result(self, reply: dict, call: Limits, wall: float) -> ExecResult | None:
        """The call's result; None when the reply is malformed (the program in the session
        can write on the protocol pipe, so no field is trusted to have its type)."""
        try:
            status = Status(reply["status"])
        except (KeyError, ValueError, TypeError):
            return None
        fields = [reply.get(name) for name in ("stdout", "stderr", "stdout_size",
                                                "stderr_size", "cpu_time")]
        out, err, out_size, err_size, cpu = fields
        if not (isinstance(out, str) and isinstance(err, str)
                and all(type(n) is int and n >= 0 for n in (out_size, err_size))
                and type(cpu) in (int, float) and 0 <= cpu < 1e9):
            return None
        if status is Status.SANDBOX_ERROR:
            return None  # only the harness may report a sandbox fault
        out_cut = out_size > call.output
        err_cut = err_size > call.output
        if status is Status.OK and (out_cut or err_cut):
            status = Status.OUTPUT_LIMIT
        return ExecResult(
            status=status,
            stdout=out[:call.output],
            stderr=err[:call.output],
            exit_code=0 if status is Status.OK else 1,
            wall_time=wall,
            cpu_time=float(cpu),
            stdout_truncated=out_cut,
            stderr_truncated=err_cut,
        )

    def _lost(self, reply: object, wall: float) -> ExecResult:
        proc = self._proc
        timed_out = reply == TIMEOUT
        code = None if proc is None or timed_out else proc.poll()
        group = getattr(proc, "agentrl_cgroup", None)
        oom = group is not None and group.oom_killed()
        self._kill()
        if oom:
            status, why = Status.MEMORY_LIMIT, "killed: the session's memory limit was hit"
        elif timed_out:
            status, why = Status.TIMEOUT, "killed after its time limit"
        elif code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
            status, why = Status.TIMEOUT, "killed by its CPU limit"
        elif code is None:
            status, why = Status.RUNTIME_ERROR, "stopped: it broke the session protocol"
        else:
            status, why = Status.RUNTIME_ERROR, f"ended (exit code {code})"
        return ExecResult(status=status, stdout="", stderr=_LOST.format(why=why),
                          exit_code=code, wall_time=wall, cpu_time=0.0)

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc)


class SessionPool:
    """Keeps ``size`` sessions started ahead of time so that start-up is off the hot path.

    ``acquire()`` hands out a started session (starting one on the spot if none is
    ready); the caller owns it and must ``close()`` it at episode end — sessions are
    never reused, so no state leaks between episodes.
    """

    def __init__(self, backend: SandboxBackend, size: int = 2,
                 limits: Limits | None = None) -> None:
        if size < 0:
            raise ConfigError(f"pool size must be >= 0, got {size}")
        self.backend, self.size, self.limits = backend, size, limits or Limits()
        self._ready: queue.SimpleQueue[Session] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._closed = False
        self.error: SandboxError | None = None
        self._thread = threading.Thread(target=self._refill, name="agentrl-session-pool",
                                        daemon=True)
        if size:
            self._thread.start()

    def acquire(self) -> Session:
        """A started session; raises SandboxError if none can be started."""
        if self._closed:
            raise SandboxError("the session pool was closed")
        try:
            session = self._ready.get_nowait()
        except queue.Empty:
            session = Session(self.backend, self.limits)
            session.start()
        self._wake.set()
        if not session.alive:  # died while waiting in the pool
            session.start()
        return session

    @property
    def ready(self) -> int:
        """How many started sessions are waiting."""
        return self._ready.qsize()

    def close(self) -> None:
        """Stop refilling and close every waiting session."""
        self._closed = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=_START_TIMEOUT)
        while True:
            try:
                self._ready.get_nowait().close()
            except queue.Empty:
                break

    def __enter__(self) -> SessionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _refill(self) -> None:
        while not self._closed:
            if self._ready.qsize() >= self.size:
                self._wake.wait()
                self._wake.clear()
                continue
            session = Session(self.backend, self.limits)
            try:
                session.start()
            except SandboxError as err:
                self.error = err
                return
            if self._closed:
                session.close()
                return
            self._ready.put(session)
