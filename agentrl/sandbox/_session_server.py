"""The interpreter loop that runs INSIDE a sandbox for a persistent session.

This file is shipped as source text (``python -I -c``); it imports only the standard
library. Protocol on the original stdin/stdout: 4-byte big-endian length + JSON.
Request ``{"id", "code", "wall_time", "cpu_time", "output"}``; reply ``{"id", "status",
"stdout", "stderr", "stdout_size", "stderr_size", "cpu_time"}``. Program output goes to
unlinked files in /tmp (capped by RLIMIT_FSIZE), never to the protocol pipe.
"""

import ast
import builtins
import json
import linecache
import os
import resource
import signal
import struct
import sys
import traceback


class CellTimeout(BaseException):
    """Raised inside the running cell when its wall or CPU time is up."""


def _on_limit(signum, frame):
    raise CellTimeout("time limit exceeded")


def _recv(fd):
    head = _read_exact(fd, 4)
    if head is None:
        return None
    body = _read_exact(fd, struct.unpack(">I", head)[0])
    return None if body is None else json.loads(body)


def _read_exact(fd, n):
    parts = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _send(fd, message):
    body = json.dumps(message).encode("utf-8")
    data = struct.pack(">I", len(body)) + body
    while data:
        data = data[os.write(fd, data):]


def _capture_file(tmp):
    path = os.path.join(tmp, f".agentrl-capture-{os.getpid()}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
    os.unlink(path)
    return fd


def _print_error(limit_frames=True):
    """Print the traceback, keeping only the frames of the agent's own cell."""
    exc = sys.exc_info()[1]
    report = traceback.TracebackException.from_exception(exc)
    frames = [frame for frame in report.stack if frame.filename == "<cell>"]
    report.stack = traceback.StackSummary.from_list(frames[-1:] if limit_frames else frames)
    sys.stderr.write("".join(report.format()))


def _run_cell(code, namespace):
    linecache.cache["<cell>"] = (len(code), None, code.splitlines(True), "<cell>")
    tree = ast.parse(code, "<cell>", "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, "<cell>", "exec"), namespace)
    if last is not None:
        value = eval(compile(last, "<cell>", "eval"), namespace)
        if value is not None:
            print(repr(value))


def _cpu_used():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    ctl_in, ctl_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    tmp = "/tmp" if os.path.isdir("/tmp") else os.getcwd()
    streams = {1: _capture_file(tmp), 2: _capture_file(tmp)}
    for target, fd in streams.items():
        os.dup2(fd, target)
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    signal.signal(signal.SIGALRM, _on_limit)
    signal.signal(signal.SIGXCPU, _on_limit)
    # Writing past RLIMIT_FSIZE must fail the write (EFBIG), not kill the interpreter.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    _send(ctl_out, {"ready": True})
    while True:
        request = _recv(ctl_in)
        if request is None:
            return
        for fd in streams.values():
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
        start_cpu = _cpu_used()
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        soft = int(start_cpu + request["cpu_time"]) + 1
        if hard == resource.RLIM_INFINITY or soft <= hard:
            resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        status = "ok"
        signal.setitimer(signal.ITIMER_REAL, request["wall_time"])
        try:
            _run_cell(request["code"], namespace)
        except CellTimeout:
            status = "timeout"
            _print_error()
        except MemoryError:
            status = "memory_limit"
            _print_error()
        except SystemExit as exc:
            status = "ok" if exc.code in (None, 0) else "runtime_error"
        except BaseException:  # the agent's code may raise anything; it is its observation
            status = "runtime_error"
            _print_error(limit_frames=False)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        reply = {"id": request["id"], "status": status, "cpu_time": _cpu_used() - start_cpu}
        cap = request["output"]
        for name, fd in (("stdout", streams[1]), ("stderr", streams[2])):
            size = os.fstat(fd).st_size
            reply[name] = os.pread(fd, cap, 0).decode("utf-8", errors="replace")
            reply[name + "_size"] = size
        _send(ctl_out, reply)


main()
