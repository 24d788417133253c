"""The adversarial suite, memory part (issue 9, fault 2): whatever a hostile program makes
the kernel hold for its sandbox (tmpfs and /dev/shm pages, inodes, socket buffers) stays
within ``Limits.memory``, on every isolating backend, and the root and /dev are read-only.
"""

from __future__ import annotations

import time

import pytest

from agentrl.sandbox import MIB, Limits, Status

from .test_sandbox_adversarial import healthy


def _meminfo(key: str) -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _run_sampling(backend, code: str, limits: Limits, key: str = "Shmem"):
    """Run ``code`` while sampling the host's /proc/meminfo ``key``; (result, peak growth)."""
    import threading

    base, peak, done = _meminfo(key), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _meminfo(key) - base)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = backend.run_python(code, limits=limits)
    finally:
        done.set()
        sampler.join()
    return result, peak[0]


def _has_cgroups(backend) -> bool:
    support = getattr(getattr(backend, "backend", backend), "cgroups", None)
    return backend.name == "docker" or bool(support and support.ok)


SHM_FILL = ("b = b'x' * ((16 << 20) - 4096)\n"
            "for i in range(64):\n    open(f'/dev/shm/{i}', 'wb').write(b)\n")


def test_dev_shm_is_sized(isolated):
    """The issue's reproducer: 1 GiB into /dev/shm with a 256 MiB limit."""
    result, grew = _run_sampling(isolated, SHM_FILL, Limits(memory=256 * MIB))
    assert result.status in (Status.RUNTIME_ERROR, Status.MEMORY_LIMIT)
    assert grew <= 256 * MIB
    healthy(isolated)


@pytest.mark.parametrize("target", ["/dev/shm", "/tmp", "/work"])
def test_tmpfs_pages_count_against_the_memory_limit(isolated, target):
    if not _has_cgroups(isolated):
        pytest.skip("no per-sandbox cgroup on this machine (the start-up warning says so)")
    code = SHM_FILL.replace("/dev/shm", target)
    limits = Limits(memory=256 * MIB, workdir_size=4096 * MIB, file_size=64 * MIB)
    result, grew = _run_sampling(isolated, code, limits)
    assert result.status is Status.MEMORY_LIMIT, result
    assert grew <= 256 * MIB + 16 * MIB  # one file's worth of slack while the kill lands
    healthy(isolated)


def test_empty_files_and_socket_buffers_count_too(isolated):
    if not _has_cgroups(isolated):
        pytest.skip("no per-sandbox cgroup on this machine (the start-up warning says so)")
    files = "for i in range(2_000_000):\n    open(f'/tmp/{i}', 'w').close()\n"
    result = isolated.run_python(files, limits=Limits(memory=48 * MIB, workdir_size=4096 * MIB,
                                                      wall_time=30, cpu_time=30))
    assert result.status is Status.MEMORY_LIMIT, result
    sockets = ("import socket\nkeep = []\nfor i in range(120):\n"
               "    a, b = socket.socketpair()\n    a.setblocking(False)\n"
               "    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 30)\n"
               "    keep.append((a, b))\n    try:\n        while True:\n"
               "            a.send(b'x' * 65536)\n    except BlockingIOError:\n        pass\n")
    result = isolated.run_python(sockets, limits=Limits(memory=48 * MIB))
    assert result.status is Status.MEMORY_LIMIT, result
    healthy(isolated)


def test_root_and_dev_are_read_only(isolated):
    code = """
import os
def attempt(path):
    try:
        with open(path, 'w') as f:
            f.write('x')
        return 'written'
    except OSError as e:
        return e.strerror
for path in ('/agentrl', '/dev/agentrl', '/etc/agentrl', '/dev/null', '/tmp/x', 'x', '/dev/shm/x'):
    print(attempt(path))
"""
    lines = isolated.run_python(code).stdout.splitlines()
    assert all(line != "written" for line in lines[:3]), lines
    assert lines[3:] == ["written"] * 4, lines
