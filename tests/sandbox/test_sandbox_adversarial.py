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
    result = any_backend.run_python("while True:\n    pass", limits=Limits(wall_time=5, cpu_time=1))
    assert result.status is Status.TIMEOUT
    assert result.wall_time < 4.5
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
