"""How a docker sandbox is configured: container options, the ``docker run`` command line
of spawned containers, and the seccomp profile (the same filter as bwrap's).

Used by :mod:`agentrl.sandbox.docker`; see there for the isolation model.
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import tempfile
import threading
from collections.abc import Sequence
from typing import Any

from agentrl.sandbox._common import BASE_ENV, prlimit_argv
from agentrl.sandbox._seccomp import DENIED, NAMESPACE_FLAGS
from agentrl.sandbox.base import Limits

__all__ = ["LABEL", "BOOT_CAPS", "container_options", "spawn_argv", "exec_argv",
           "seccomp_profile", "seccomp_file"]

#: Label on every container this backend creates.
LABEL = "agentrl.sandbox"
#: Capabilities the boot loop (root in the container) keeps: to start the program as its
#: uid, and to kill what the program leaves behind.
BOOT_CAPS = ("SETUID", "SETGID", "KILL")

_ARCHES = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}
_file: dict[str, str] = {}
_file_lock = threading.Lock()


def seccomp_profile() -> str:
    """Docker's seccomp profile format (JSON) for the same filter as bwrap's
    (:mod:`agentrl.sandbox._seccomp`): everything allowed but :data:`DENIED` (EPERM),
    ``clone3`` (ENOSYS, so libc falls back to ``clone``) and ``clone``/``unshare`` with a
    namespace flag; only the native ABI (other ABIs are refused by the architecture check).
    It replaces docker's default profile, so both backends refuse the same calls."""
    rules: list[dict[str, Any]] = [
        {"names": list(DENIED), "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
    ]
    for flag in NAMESPACE_FLAGS:
        rules.append({"names": ["clone", "unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                      "args": [{"index": 0, "value": flag, "valueTwo": flag,
                                "op": "SCMP_CMP_MASKED_EQ"}]})
    profile: dict[str, Any] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}
    arch = _ARCHES.get(platform.machine())
    if arch is not None:
        profile["architectures"] = [arch]
    return json.dumps(profile, sort_keys=True)


def seccomp_file() -> str:
    """:func:`seccomp_profile` in a private file (mode 0600, made once per process and
    removed at exit), for the command line client."""
    with _file_lock:
        if "path" not in _file:
            fd, path = tempfile.mkstemp(prefix="agentrl-seccomp-", suffix=".json")
            with os.fdopen(fd, "w") as handle:
                handle.write(seccomp_profile())
            atexit.register(os.unlink, path)
            _file["path"] = path
        return _file["path"]


def container_options(limits: Limits, *, image: str, ulimits: bool = True) -> dict[str, Any]:
    """Keyword arguments for ``client.containers.create``: isolation and limits.

    The container's own user is root so that the boot loop can start the program as the
    unprivileged uid; it keeps only the capabilities to do that and to kill what the
    program leaves behind (SETUID, SETGID, KILL).
    ``ulimits=False`` (pooled containers) leaves the file size, open files and CPU rlimits
    to each execution's ``prlimit`` (which can only lower them)."""
    from docker.types import Ulimit

    cpu = max(1, int(limits.cpu_time + 0.999))
    rlimits = [Ulimit(name="core", soft=0, hard=0)]
    if ulimits:
        rlimits += [
            Ulimit(name="nofile", soft=limits.open_files, hard=limits.open_files),
            Ulimit(name="fsize", soft=limits.file_size, hard=limits.file_size),
            Ulimit(name="cpu", soft=cpu, hard=cpu + 1),
        ]
    return {
        "image": image,
        "user": "0:0",
        "working_dir": "/work",
        "network_mode": "none",
        "network_disabled": True,
        "read_only": True,
        "tmpfs": {
            "/work": f"size={limits.workdir_size},mode=1777",
            "/tmp": f"size={limits.workdir_size},mode=1777",
        },
        "shm_size": limits.workdir_size,  # sized like /tmp; its pages count as memory
        "cap_drop": ["ALL"],
        "cap_add": list(BOOT_CAPS),
        "security_opt": ["no-new-privileges", f"seccomp={seccomp_profile()}"],
        "mem_limit": limits.memory,
        "memswap_limit": limits.memory,
        "pids_limit": limits.processes,
        "ulimits": rlimits,
        "environment": dict(BASE_ENV),
        "labels": {LABEL: "1"},
        "detach": True,
    }


def spawn_argv(docker: str, command: Sequence[str], limits: Limits, *, image: str, name: str,
               uid: int, cpu_limit: bool = True) -> list[str]:
    """``docker run -i`` command line for :meth:`DockerBackend.spawn` (same isolation as
    :func:`container_options`, but no capabilities at all and the unprivileged user)."""
    cpu = max(1, int(limits.cpu_time + 0.999))
    argv = [docker, "run", "-i", "--rm", "--name", name, "--init", "--log-driver", "none",
            "--user", f"{uid}:{uid}", "--workdir", "/work", "--network", "none", "--read-only",
            "--tmpfs", f"/work:size={limits.workdir_size},mode=1777",
            "--tmpfs", f"/tmp:size={limits.workdir_size},mode=1777",
            "--shm-size", str(limits.workdir_size),
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--security-opt", f"seccomp={seccomp_file()}",
            "--memory", str(limits.memory), "--memory-swap", str(limits.memory),
            "--pids-limit", str(limits.processes),
            "--ulimit", f"nofile={limits.open_files}:{limits.open_files}",
            "--ulimit", f"fsize={limits.file_size}:{limits.file_size}",
            "--ulimit", "core=0:0", "--label", f"{LABEL}=1"]
    if cpu_limit:
        argv += ["--ulimit", f"cpu={cpu}:{cpu + 1}"]
    for key, value in BASE_ENV.items():
        argv += ["--env", f"{key}={value}"]
    return [*argv, image, *prlimit_argv(limits, cpu=cpu_limit, nproc=False), *command]


def exec_argv(docker: str, container: str, command: Sequence[str], limits: Limits, *,
              uid: int, cpu_limit: bool = True) -> list[str]:
    """``docker exec -i`` command line that spawns ``command`` in a pooled container (made
    with :func:`container_options`, ``ulimits=False``) as the unprivileged ``uid``: its
    capabilities are empty, and ``prlimit`` sets this process's rlimits."""
    return [docker, "exec", "-i", "--user", f"{uid}:{uid}", "--workdir", "/work", container,
            *prlimit_argv(limits, cpu=cpu_limit, nproc=False), *command]
