"""The bwrap spawner: a small long-lived helper that starts sandboxes for the harness.

Run by :mod:`agentrl.sandbox._spawner` as ``python -I -S -c <this source> <control fd>``
under the sandbox uid (stdlib only; never imported by the harness). Why it exists:

* Starting bwrap straight from the harness needs ``fork`` (``vfork`` is impossible once
  the uid must change), and a fork costs time in proportion to the harness's memory; this
  process is small and already runs as the sandbox uid, so it uses ``posix_spawn``.
* It applies the rlimits with ``prlimit`` to the sandbox's first process while bwrap
  waits on ``--block-fd``, after the user namespace exists (so RLIMIT_NPROC counts per
  sandbox) and before the program runs; no ``prlimit`` binary is exec'd. It moves that
  process into the sandbox's cgroups (if any) at the same point.
* It is a child subreaper: bwrap's pid 1 (which reaped the program) is reparented here
  when bwrap exits, so ``wait4`` yields the program's CPU time with no wrapper shell.

Protocol (SOCK_SEQPACKET): a request is JSON plus fds [reply socket, stdin, stdout, stderr,
*file fds]; the reply socket gets ``{"pid": n}`` (or ``{"error": text}``), accepts
``b"kill"``, and finally gets ``{"exit": code, "cpu": seconds, "started": bool}`` once
bwrap and its pid 1 are both reaped (the whole sandbox is gone).
"""

import ctypes
import json
import os
import resource
import select
import selectors
import signal
import socket
import sys
import time

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_INFO_TIMEOUT = 20.0


class _Run:
    def __init__(self, sock, pid, init, status_r):
        self.sock, self.pid, self.init, self.status_r = sock, pid, init, status_r
        self.exit = None
        self.cpu = 0.0
        self.init_done = init is None


def _read_until(fd, end, timeout):
    """Read ``fd`` until the data ends with ``end``, EOF or the timeout."""
    data, deadline = b"", time.monotonic() + timeout
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while not data.endswith(end):
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data


def _cpu(usage):
    return usage.ru_utime + usage.ru_stime


class Spawner:
    def __init__(self, control):
        self.control = control
        self.sel = selectors.DefaultSelector()
        self.runs = {}  # bwrap pid -> _Run
        self.inits = {}  # sandbox pid 1 (host pid) -> bwrap pid
        self.by_sock = {}  # reply socket fd -> _Run

    def start(self, message, fds):
        # recv_fds' MSG_CMSG_CLOEXEC is not honoured everywhere; this process is single
        # threaded, so marking them here is race-free. Only the fds named below reach bwrap.
        for fd in fds:
            os.set_inheritable(fd, False)
        reply = socket.socket(fileno=fds[0])
        stdin_r, stdout_w, stderr_w, *file_fds = fds[1:]
        request = json.loads(message)
        argv = request["argv"]
        for index, fd in zip(request["fd_args"], file_fds, strict=True):
            argv[index] = str(fd)
            os.set_inheritable(fd, True)
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe()
        status_r, status_w = os.pipe()
        for fd in (info_w, block_r, status_w):
            os.set_inheritable(fd, True)
        at = request["insert_at"]
        argv[at:at] = ["--info-fd", str(info_w), "--block-fd", str(block_r),
                       "--json-status-fd", str(status_w)]
        pid = None
        try:
            pid = os.posix_spawn(
                argv[0], argv, request["env"], setsid=True,
                file_actions=[(os.POSIX_SPAWN_DUP2, stdin_r, 0),
                              (os.POSIX_SPAWN_DUP2, stdout_w, 1),
                              (os.POSIX_SPAWN_DUP2, stderr_w, 2)])
        except OSError as err:
            error = f"could not start {argv[0]}: {err}"
        finally:
            for fd in (info_w, block_r, status_w, stdin_r, stdout_w, stderr_w, *file_fds):
                os.close(fd)
        if pid is None:
            for fd in (info_r, block_w, status_r):
                os.close(fd)
            self.send(reply, {"error": error})
            reply.close()
            return
        info = _read_until(info_r, b"}\n", _INFO_TIMEOUT)
        os.close(info_r)
        try:
            init = json.loads(info)["child-pid"]
        except (ValueError, KeyError, TypeError):
            init = None  # bwrap failed before cloning; it exits by itself
        error = None
        if init is not None:
            try:
                for res, soft, hard in request["rlimits"]:
                    resource.prlimit(init, res, (soft, hard))
                # Its cgroups: every process of the sandbox descends from this one.
                for path in request.get("cgroups", ()):
                    with open(path, "w") as handle:
                        handle.write(str(init))
            except ProcessLookupError:
                pass  # bwrap failed during set-up already; its status says why
            except OSError as err:
                # The program must never run without its limits: kill before unblocking.
                error = f"could not set the sandbox's rlimits or cgroup: {err}"
                os.killpg(pid, signal.SIGKILL)
        if error is None:
            try:
                os.write(block_w, b"x")
            except BrokenPipeError:
                pass  # bwrap already exited; its status says why
        os.close(block_w)
        run = _Run(reply, pid, init, status_r)
        self.runs[pid] = run
        if init is not None:
            self.inits[init] = pid
        self.by_sock[reply.fileno()] = run
        self.sel.register(reply, selectors.EVENT_READ)
        self.send(reply, {"error": error} if error else {"pid": pid})

    @staticmethod
    def send(sock, obj):
        try:
            sock.send(json.dumps(obj).encode())
        except OSError:
            pass  # the harness gave up on this run

    def reap(self):
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.runs:
                run = self.runs[pid]
                run.exit = os.waitstatus_to_exitcode(status)
                run.cpu += _cpu(usage)
                if not run.init_done:
                    try:
                        got, _, usage = os.wait4(run.init, os.WNOHANG)
                    except ChildProcessError:
                        got = -1  # bwrap reaped its pid 1 itself (its CPU is in bwrap's)
                    if got == run.init:
                        run.cpu += _cpu(usage)
                    if got != 0:
                        self.inits.pop(run.init, None)
                        run.init_done = True
                self.finish_if_done(run)
            elif pid in self.inits:
                run = self.runs[self.inits.pop(pid)]
                run.cpu += _cpu(usage)
                run.init_done = True
                self.finish_if_done(run)

    def finish_if_done(self, run):
        if run.exit is None or not run.init_done:
            return
        # bwrap wrote its whole status before it exited (and was reaped): one read.
        os.set_blocking(run.status_r, False)
        try:
            status = os.read(run.status_r, 4096)
        except BlockingIOError:
            status = b""
        os.close(run.status_r)
        started = b'"exit-code"' in status
        self.send(run.sock, {"exit": run.exit, "cpu": run.cpu, "started": started})
        del self.runs[run.pid]
        # The socket stays open until the harness closes its end: closing a unix socket
        # with an unread "kill" in it would reset the harness's end before the report.

    def on_reply_socket(self, sock):
        run = self.by_sock[sock.fileno()]
        try:
            data = sock.recv(64)
        except OSError:
            data = b""
        if data == b"kill":
            if run.exit is None:  # not reaped yet, so the process group is still ours
                try:
                    os.killpg(run.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        elif not data:  # the harness closed its end (done, or gave up on this run)
            del self.by_sock[sock.fileno()]
            self.sel.unregister(sock)
            sock.close()

    def serve(self):
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.sel.register(wake_r, selectors.EVENT_READ)
        self.sel.register(self.control, selectors.EVENT_READ)
        while True:
            for key, _ in self.sel.select():
                if key.fileobj is self.control:
                    message, fds, _, _ = socket.recv_fds(self.control, 1 << 20, 64,
                                                         socket.MSG_CMSG_CLOEXEC)
                    if not message:
                        return  # the harness is gone; --die-with-parent ends the sandboxes
                    self.start(message, fds)
                elif key.fileobj == wake_r:
                    os.read(wake_r, 4096)
                else:
                    self.on_reply_socket(key.fileobj)
            self.reap()


def main():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("agentrl spawner: prctl(PR_SET_CHILD_SUBREAPER) failed")
    control = socket.socket(fileno=int(sys.argv[1]))
    control.set_inheritable(False)  # nothing the spawner starts may talk to the harness
    if os.getppid() == 1:
        return  # the harness died before we set the death signal
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    Spawner(control).serve()


if __name__ == "__main__":  # run as ``python -c <source>``; importing does nothing
    main()
