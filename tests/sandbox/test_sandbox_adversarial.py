"""The adversarial suite: hostile programs end with the safe outcome and the host unharmed.

Runs on every available isolating backend (bwrap always; docker with an engine). Cases
where rlimits alone are the defence also run on the unisolated ``local`` backend. After
each case the harness must still run a normal program (``healthy``).
"""

from __future__ import annotations

import os
import secrets
import socket
import time

import pytest

from agentrl.sandbox import MIB, Limits, Status

from .conftest import processes_with

FAST = Limits(wall_time=2.0, cpu_time=1.0)


def healthy(backend) -> None:
    result = backend.run_python("print(6 * 7)")
    assert result.status is Status.OK and result.stdout == "42\n"


def test_infinite_loop_is_stopped_by_cpu_limit(any_backend):
    # A long wall limit, so that on a loaded machine the CPU limit still ends it first.
    result = any_backend.run_python("while True:\n    pass", limits=Limits(wall_time=30, cpu_time=1))
    assert result.status is Status.TIMEOUT
    assert result.exit_code is not None  # killed by the kernel (SIGXCPU/SIGKILL), not the host
    assert result.wall_time < 29
    healthy(any_backend)


def test_sleep_forever_is_stopped_by_wall_limit(any_backend):
    result = any_backend.run_python("import time\ntime.sleep(10**6)", limits=Limits(wall_time=1))
    assert result.status is Status.TIMEOUT and result.exit_code is None
    assert 0.9 < result.wall_time < 3
    healthy(any_backend)


def test_ignoring_sigterm_does_not_help(any_backend):
    code = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\nwhile True:\n    time.sleep(0.1)")
    result = any_backend.run_python(code, limits=Limits(wall_time=1))
    assert result.status is Status.TIMEOUT and result.stdout == "ready\n"
    healthy(any_backend)


def test_memory_bomb_hits_the_memory_limit(any_backend):
    limits = Limits(memory=256 * MIB)
    one_shot = any_backend.run_python("x = bytearray(2 * 1024**3)", limits=limits)
    assert one_shot.status is Status.MEMORY_LIMIT
    growing = any_backend.run_python("xs = []\nwhile True:\n    xs.append(' ' * 10**7)",
                                     limits=limits)
    assert growing.status is Status.MEMORY_LIMIT
    healthy(any_backend)


def test_gigabyte_of_output_is_capped_quickly(any_backend):
    code = "import sys\nfor _ in range(1024):\n    sys.stdout.buffer.write(b'x' * 2**20)"
    result = any_backend.run_python(code, limits=Limits(output=64 * 1024))
    assert result.status is Status.OUTPUT_LIMIT
    assert result.stdout_truncated and len(result.stdout) == 64 * 1024
    assert result.wall_time < 5
    healthy(any_backend)


def test_huge_file_is_refused(any_backend):
    code = ("with open('big.bin', 'wb') as f:\n    for _ in range(1024):\n"
            "        f.write(b'x' * 2**20)")
    result = any_backend.run_python(code, limits=Limits(file_size=8 * MIB))
    assert result.status is Status.RUNTIME_ERROR
    assert "File too large" in result.stderr
    healthy(any_backend)


def test_many_files_fill_only_the_capped_workdir(isolated):
    code = ("for i in range(64):\n    with open(f'f{i}', 'wb') as f:\n"
            "        f.write(b'x' * 4 * 2**20)")
    result = isolated.run_python(code, limits=Limits(workdir_size=16 * MIB))
    assert result.status is Status.RUNTIME_ERROR
    assert "No space left on device" in result.stderr
    healthy(isolated)


def test_fork_bomb_is_contained(isolated):
    marker = f"forkbomb{secrets.token_hex(4)}"
    code = (f"# {marker}\nimport os\nwhile True:\n    try:\n        os.fork()\n"
            "    except OSError:\n        pass")
    result = isolated.run_python(code, limits=Limits(wall_time=2, processes=32))
    assert result.status is Status.TIMEOUT
    assert processes_with(marker) == []
    healthy(isolated)


def test_process_limit_really_bites(isolated):
    # Counts successful forks; as root without a non-root uid RLIMIT_NPROC would not apply.
    code = ("import os, time\nn = 0\ntry:\n    for _ in range(500):\n"
            "        if os.fork() == 0:\n            time.sleep(3)\n            os._exit(0)\n"
            "        n += 1\nexcept OSError as e:\n    print(n, e.errno)")
    result = isolated.run_python(code, limits=Limits(processes=20, wall_time=5))
    forked, errno = (int(x) for x in result.stdout.split())
    assert errno == 11  # EAGAIN from the process limit
    assert 10 <= forked < 20  # the sandbox's own processes count against the 20 too


def test_secrets_are_not_readable(isolated, monkeypatch, tmp_path):
    secret = secrets.token_hex(8)
    monkeypatch.setenv("AGENTRL_HOST_SECRET", secret)
    host_file = tmp_path / "secret.txt"
    host_file.write_text(secret)
    code = f"""
import os
def read(path):
    try:
        with open(path, 'rb') as f:
            return f.read().decode('latin-1')
    except OSError as e:
        return type(e).__name__
print(read('/etc/shadow'))
print(read(os.path.expanduser('~/.ssh/id_rsa')))
print(read('/root/.ssh/id_rsa'))
print(read('/proc/1/environ'))
print(read({str(host_file)!r}))
print(dict(os.environ))
"""
    result = isolated.run_python(code)
    lines = result.stdout.splitlines()
    assert lines[0] == "FileNotFoundError"  # /etc/shadow is not in the sandbox
    assert lines[1] in ("FileNotFoundError", "PermissionError")
    assert lines[2] in ("FileNotFoundError", "PermissionError")
    assert secret not in result.stdout
    assert "AGENTRL_HOST_SECRET" not in result.stdout
    assert lines[4] == "FileNotFoundError"  # host /tmp is not shared


def test_writes_outside_the_workdir_never_reach_the_host(isolated, tmp_path):
    target = tmp_path / "escaped.txt"
    code = f"""
import os
def attempt(fn):
    try:
        fn()
        return 'written'
    except OSError as e:
        return type(e).__name__
print(attempt(lambda: open('/usr/agentrl-escape', 'w').write('x')))
print(attempt(lambda: open({str(target)!r}, 'w').write('x')))
os.symlink('/usr/lib/agentrl-escape', 'link')
print(attempt(lambda: open('link', 'w').write('x')))
os.symlink({str(target)!r}, 'link2')
print(attempt(lambda: open('link2', 'w').write('x')))
"""
    result = isolated.run_python(code)
    lines = result.stdout.splitlines()
    assert lines[0] in ("OSError", "PermissionError")  # read-only system directory
    assert lines[2] in ("OSError", "PermissionError")  # through a symlink: still read-only
    assert not target.exists()  # whatever happened inside, the host file was never made
    assert not os.path.exists("/usr/agentrl-escape")
    assert not os.path.exists("/usr/lib/agentrl-escape")


def test_cannot_connect_to_a_host_listener(isolated):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.setblocking(False)
        port = server.getsockname()[1]
        code = f"""
import socket
try:
    socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'leak')
    print('connected')
except OSError as e:
    print('refused', type(e).__name__)
"""
        result = isolated.run_python(code)
        assert result.stdout.startswith("refused")
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever arrived


def test_killing_the_parent_and_everything_visible(isolated):
    host_pid = os.getpid()
    code = f"""
import os, signal
try:
    os.kill({host_pid}, signal.SIGKILL)
except OSError as e:
    print('host pid', type(e).__name__)
os.kill(os.getppid(), signal.SIGKILL)
os.kill(-1, signal.SIGKILL)
"""
    result = isolated.run_python(code)
    assert result.status is not Status.OK
    assert os.getpid() == host_pid  # still here
    healthy(isolated)


def test_background_process_does_not_survive(any_backend):
    marker = f"agentrl-bg-{secrets.token_hex(4)}"
    code = f"""
import subprocess, sys
subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', '{marker}'])
print('started')
"""
    started = time.monotonic()
    result = any_backend.run_python(code, limits=Limits(wall_time=10))
    assert result.status is Status.OK and result.stdout == "started\n"
    assert time.monotonic() - started < 5  # the harness did not wait for the child
    deadline = time.monotonic() + 2
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []


def test_detached_double_fork_does_not_survive(isolated):
    marker = f"agentrl-daemon-{secrets.token_hex(4)}"
    code = f"""
import os, sys
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', '{marker}'])
    os._exit(0)
print('detached')
"""
    result = isolated.run_python(code, limits=Limits(wall_time=10))
    assert result.stdout == "detached\n"
    deadline = time.monotonic() + 2
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []


# -- issue 9: exit-status forgery, cross-sandbox channels, kernel attack surface ---------

FORGE = ("import ctypes,os,struct,time\nl=ctypes.CDLL(None)\n"
         "fd=l.syscall(438,l.syscall(434,1,0),4,0)\n"
         "os.write(fd,struct.pack('Q',1));time.sleep(1)\nraise SystemExit(1)")
x86_64 = pytest.mark.skipif(os.uname().machine != "x86_64",
                            reason="raw syscall numbers below are x86-64's")


@x86_64
def test_forged_exit_status_is_the_real_failure(isolated):
    result = isolated.run_python(FORGE)
    assert result.status is Status.RUNTIME_ERROR and result.exit_code == 1


@x86_64
def test_forged_exit_status_from_a_grandchild(isolated):
    code = ("import os, sys, time\n"
            "if os.fork() == 0:\n"
            "    if os.fork() == 0:\n"
            f"        exec({FORGE.replace('raise SystemExit(1)', 'os._exit(0)')!r})\n"
            "    os._exit(0)\n"
            "time.sleep(1.5)\nsys.exit(7)")
    result = isolated.run_python(code)
    assert result.status is Status.RUNTIME_ERROR and result.exit_code == 7


def test_nothing_can_reach_into_the_reaper(isolated):
    """Every route into another process of the sandbox (pid 1 reports the exit status)."""
    code = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def sys(*args):
    return 'ok' if libc.syscall(*args) >= 0 else errno.errorcode[ctypes.get_errno()]
def opened(path, mode=os.O_RDWR):
    try:
        os.close(os.open(path, mode))
        return 'ok'
    except OSError as e:
        return errno.errorcode[e.errno]
print('pidfd_open', sys(434, 1, 0))
print('ptrace', sys(101, 16, 1, 0, 0))
buf = ctypes.create_string_buffer(8)
iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8)
print('process_vm_writev', sys(311, 1, iov, 1, iov, 1, 0))
print('mem', opened('/proc/1/mem'))
print('task_mem', opened('/proc/1/task/1/mem'))
try:
    fds = os.listdir('/proc/1/fd')
except OSError:  # masked (bwrap), or not ours to list (docker: pid 1 is root)
    fds = []
print('fds', [opened(f'/proc/1/fd/{fd}') for fd in fds if fd not in ('0', '1', '2')])
"""
    if os.uname().machine != "x86_64":
        pytest.skip("raw syscall numbers are x86-64's")
    lines = dict(line.split(" ", 1) for line in isolated.run_python(code).stdout.splitlines())
    for name in ("pidfd_open", "ptrace", "process_vm_writev", "mem", "task_mem"):
        assert lines[name] != "ok", (name, lines)
    assert "'ok'" not in lines["fds"]


@x86_64
def test_kernel_keyrings_are_not_a_channel_between_sandboxes(isolated):
    desc = f"agentrl-{secrets.token_hex(6)}"
    writer = f"""
import ctypes, time
libc = ctypes.CDLL(None, use_errno=True)
key = libc.syscall(248, b"user", b"{desc}", b"secret-payload", 14, -4)  # add_key, user keyring
print(key, ctypes.get_errno())
if key > 0:
    libc.syscall(250, 5, key, 0x3f3f3f3f)  # KEYCTL_SETPERM: everything for everyone
time.sleep(2.5)
"""
    reader = f"""
import ctypes, time
time.sleep(0.8)
libc = ctypes.CDLL(None, use_errno=True)
try:
    keys = open('/proc/keys').read()
except OSError as e:
    keys = str(e)
found = libc.syscall(250, 10, -4, b"user", b"{desc}", 0)  # KEYCTL_SEARCH
print('{desc}' in keys, found)
"""
    import threading

    results = {}
    threads = [threading.Thread(target=lambda k=k, c=c: results.__setitem__(
        k, isolated.run_python(c, limits=Limits(wall_time=8)))) for k, c in
        (("w", writer), ("r", reader))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    key, err = results["w"].stdout.split()
    assert int(key) < 0 and int(err) in (1, 38)  # EPERM (seccomp) or ENOSYS
    seen, found = results["r"].stdout.split()
    assert seen == "False" and int(found) < 0


def test_nested_user_namespaces_and_mounts_are_refused(isolated):
    code = """
import ctypes, errno, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
def sys(*args):
    return 'ok' if libc.syscall(*args) >= 0 else errno.errorcode[ctypes.get_errno()]
print('unshare_user', sys(272, 0x10000000))
print('unshare_mount', sys(272, 0x00020000))
print('unshare_net', sys(272, 0x40000000))
print('clone_user', sys(56, 0x10000000 | 17, 0, 0, 0, 0))
print('clone3', sys(435, 0, 0))
print('mount', sys(165, b"none", b"/tmp", b"tmpfs", 0, 0))
r = subprocess.run(['unshare', '-r', 'id', '-u'], capture_output=True, text=True)
print('unshare_cmd', 'ok' if r.returncode == 0 else 'refused')
"""
    if os.uname().machine != "x86_64":
        pytest.skip("raw syscall numbers are x86-64's")
    lines = dict(line.split(" ", 1) for line in isolated.run_python(code).stdout.splitlines())
    assert lines.pop("clone3") in ("ENOSYS", "EPERM")
    assert all(value != "ok" for value in lines.values()), lines


@x86_64
def test_kernel_attack_surface_is_denied(isolated):
    numbers = {"bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "keyctl": 250,
               "setns": 308, "kexec_load": 246, "init_module": 175, "io_uring_setup": 425,
               "pivot_root": 155, "umount2": 166, "pidfd_getfd": 438, "process_vm_readv": 310}
    code = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            f"for name, nr in {numbers!r}.items():\n"
            "    print(name, libc.syscall(nr, 0, 0, 0, 0, 0), ctypes.get_errno())\n")
    for line in isolated.run_python(code).stdout.splitlines():
        name, ret, err = line.split()
        assert int(ret) == -1 and int(err) == 1, line  # EPERM from the filter


def test_ordinary_programs_still_work_under_the_filter(isolated):
    code = """
import asyncio, multiprocessing, subprocess, sys, threading
out = []
t = threading.Thread(target=out.append, args=('thread',)); t.start(); t.join()
out.append(subprocess.run([sys.executable, '-c', 'print("child")'], capture_output=True,
                          text=True).stdout.strip())
with multiprocessing.get_context('fork').Pool(2) as pool:
    out.append(sum(pool.map(abs, [-1, -2])))
async def main():
    proc = await asyncio.create_subprocess_exec('/bin/echo', 'async', stdout=-1)
    return (await proc.communicate())[0].decode().strip()
out.append(asyncio.run(main()))
print(out)
"""
    result = isolated.run_python(code, limits=Limits(wall_time=20))
    assert result.stdout.strip() == "['thread', 'child', 3, 'async']", result.stderr


def test_loopback_is_up_but_private_to_the_sandbox(isolated):
    """docs/sandbox.md: lo is up inside; a server there is unreachable from the host."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free on the host once closed
    code = f"""
import socket, time
server = socket.socket()
server.bind(('127.0.0.1', {port}))
server.listen(1)
client = socket.create_connection(('127.0.0.1', {port}), timeout=2)
conn, _ = server.accept()
client.sendall(b'ping')
print(conn.recv(4).decode(), flush=True)
time.sleep(2.5)
"""
    import threading

    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("r", isolated.run_python(code)))
    thread.start()
    time.sleep(1.5)  # the sandbox's server is listening now
    try:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        thread.join()
    assert box["r"].stdout == "ping\n"
