"""Runs INSIDE a Docker container: write files, run the program with caps, report JSON.

Shipped as source (``python3 -I -c``). The request comes in the environment variable
AGENTRL_REQUEST (JSON: argv, files as base64, stdin as base64, wall_time, output, uid);
the result is one JSON line on this process's stdout.

This loop runs as root inside the container (all capabilities dropped but SETUID,
SETGID and KILL: to drop privileges and to kill what the program leaves behind) and
starts the program as the unprivileged ``uid``: the program cannot signal, ptrace or
read this process (nor its stdout, which carries the report), so it cannot forge the
result. The program's own output goes to pipes that this loop caps, so a program
printing a gigabyte is stopped at the cap. Once the program has exited (or overrun),
everything else it left running is killed.

Memory: the program (and all it starts) gets ``oom_score_adj`` 1000, so when the
container's memory cgroup is full the kernel kills the program, not this loop; the OOM
kill counter of the cgroup says whether that happened (reported as ``oom``). A touched
reserve, freed just before the report is written, leaves this loop room to write it
even when tmpfs pages the program left still fill the cgroup.
"""

import base64
import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import time

# After the program exits, how long processes it left behind may keep its pipes open.
DRAIN_GRACE = 0.2
# Memory cgroup files with the OOM kill counter (cgroup v1, then v2), as seen inside.
OOM_FILES = ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events")


def oom_kills():
    """How many processes the container's memory cgroup has OOM-killed (0 if unknown)."""
    for path in OOM_FILES:
        try:
            with open(path) as handle:
                for line in handle:
                    name, _, value = line.partition(" ")
                    if name == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return 0


def set_oom_score_adj(value):
    """Set this process's ``oom_score_adj`` (children inherit it); lowering it back to 0
    needs no capability as long as it was never set below 0."""
    try:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write(str(value))
    except OSError:
        pass


def drop_privileges(uid):
    if os.getuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def write_files(files, uid):
    """Write the work files as the program's user (a forked child), so the program owns them."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            drop_privileges(uid)
            for name, body in files.items():
                folder = os.path.dirname(name)
                if folder:
                    os.makedirs(folder, exist_ok=True)
                with open(name, "wb") as handle:
                    handle.write(base64.b64decode(body))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise SystemExit("agentrl boot: could not write the work files")


def kill_leftovers(pid):
    """Kill the program's process group and, as root in the container, every other process
    of the container but this loop and pid 1 (daemons the program detached included)."""
    targets = [lambda: os.killpg(pid, signal.SIGKILL)]
    if os.getuid() == 0:
        targets.append(lambda: os.kill(-1, signal.SIGKILL))
    for target in targets:
        try:
            target()
        except OSError:
            pass


def main():
    request = json.loads(os.environ.pop("AGENTRL_REQUEST"))
    uid = request["uid"]
    if request["files"]:
        write_files(request["files"], uid)
    cap, deadline = request["output"], time.monotonic() + request["wall_time"]
    start = time.monotonic()
    as_user = {"user": uid, "group": uid, "extra_groups": []} if os.getuid() == 0 else {}
    reserve = b"r" * (2 * cap + (2 << 20))  # touched pages, freed before the report
    ooms = oom_kills()
    # SIGCHLD wakes the loop through this pipe when the program exits (set before the
    # program starts, so an early exit is not missed; pidfds may be denied by seccomp).
    exit_fd, wake_fd = os.pipe()
    for fd in (exit_fd, wake_fd):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_fd)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    set_oom_score_adj(1000)  # the program is forked with it: first in line for the OOM killer
    try:
        proc = subprocess.Popen(request["argv"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True, **as_user)
    finally:
        set_oom_score_adj(0)
    data = memoryview(base64.b64decode(request["stdin"]))
    sel = selectors.DefaultSelector()
    out = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    totals = dict.fromkeys(out, 0)
    for fd in (*out, exit_fd):
        sel.register(fd, selectors.EVENT_READ)
    in_fd = proc.stdin.fileno()
    if data:
        os.set_blocking(in_fd, False)
        sel.register(in_fd, selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    timed_out = exceeded = False
    exited_at = None
    open_streams = 2
    while open_streams and not exceeded:
        now = time.monotonic()
        limit = deadline if exited_at is None else min(deadline, exited_at + DRAIN_GRACE)
        if now >= limit:
            timed_out = exited_at is None
            break
        for key, _ in sel.select(limit - now):
            if key.fd == exit_fd:
                os.read(exit_fd, 4096)
                if proc.poll() is not None:
                    exited_at = time.monotonic()
                    sel.unregister(exit_fd)
            elif key.fd == in_fd:
                try:
                    sent = os.write(in_fd, data[:65536])
                except BlockingIOError:
                    sent = 0
                except BrokenPipeError:
                    sent = len(data)
                data = data[sent:]
                if not data:
                    sel.unregister(in_fd)
                    proc.stdin.close()
            else:
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fd)
                    open_streams -= 1
                    continue
                totals[key.fd] += len(chunk)
                out[key.fd] += chunk[: max(0, cap - len(out[key.fd]))]
                if totals[key.fd] > cap:
                    exceeded = True
                    break
    kill_leftovers(proc.pid)
    code = proc.wait()
    del reserve
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    fields = {
        "stdout_total": totals[proc.stdout.fileno()],
        "stderr_total": totals[proc.stderr.fileno()],
        "returncode": None if timed_out or exceeded else code,
        "timed_out": timed_out,
        "output_exceeded": exceeded,
        "oom": oom_kills() > ooms,
        "wall_time": time.monotonic() - start,
        "cpu_time": usage.ru_utime + usage.ru_stime,
    }
    # Written in pieces, so that the only large allocations are the two base64 texts.
    write = sys.stdout.buffer.write
    write(b"\nAGENTRL-RESULT " + json.dumps(fields).encode()[:-1] + b', "stdout": "')
    write(base64.b64encode(out.pop(proc.stdout.fileno())))
    write(b'", "stderr": "')
    write(base64.b64encode(out.pop(proc.stderr.fileno())))
    write(b'"}\n')
    sys.stdout.flush()


main()
