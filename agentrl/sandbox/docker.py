"""The Docker backend, through the docker SDK (docker-py).

Each execution runs in a container with no network, a read-only root, tmpfs work
directory and /tmp, all capabilities dropped, ``no-new-privileges``, a non-root user,
cgroup memory and pids limits, and rlimits. Inside, a small Python loop
(``_docker_boot.py``) writes the files, runs the program with capped output and a wall
deadline, and reports one JSON line; the host also kills the container if it overruns.

Containers are short-lived (``pool_size=0``) or taken from a :class:`ContainerPool` of
started, idle containers; a pooled container serves exactly one execution and is then
removed, so nothing leaks between executions.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import threading
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from agentrl.errors import SandboxError, SandboxUnavailableError
from agentrl.sandbox._common import BASE_ENV, check_files, prlimit_argv, to_result
from agentrl.sandbox._proc import RawOutcome
from agentrl.sandbox.base import ExecResult, Files, Limits, SandboxBackend

__all__ = ["DockerBackend", "ContainerPool", "container_options", "parse_report",
           "DEFAULT_IMAGE"]

#: Image used unless another is given; it must have python3 and util-linux's prlimit.
DEFAULT_IMAGE = "python:3.11-slim"
_LABEL = "agentrl.sandbox"
_MARK = "AGENTRL-RESULT "
# Seconds the host waits past the wall time before killing the container itself.
_GRACE = 5.0


def container_options(limits: Limits, *, image: str, user: str = "65534:65534") -> dict[str, Any]:
    """Keyword arguments for ``client.containers.create``: isolation and limits."""
    from docker.types import Ulimit

    cpu = max(1, int(limits.cpu_time + 0.999))
    return {
        "image": image,
        "user": user,
        "working_dir": "/work",
        "network_mode": "none",
        "network_disabled": True,
        "read_only": True,
        "tmpfs": {
            "/work": f"size={limits.workdir_size},mode=1777",
            "/tmp": f"size={limits.workdir_size},mode=1777",
        },
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "mem_limit": limits.memory,
        "memswap_limit": limits.memory,
        "pids_limit": limits.processes,
        "ulimits": [
            Ulimit(name="nofile", soft=limits.open_files, hard=limits.open_files),
            Ulimit(name="fsize", soft=limits.file_size, hard=limits.file_size),
            Ulimit(name="cpu", soft=cpu, hard=cpu + 1),
            Ulimit(name="core", soft=0, hard=0),
        ],
        "environment": dict(BASE_ENV),
        "labels": {_LABEL: "1"},
        "detach": True,
    }


def request_env(command: Sequence[str], files: Mapping[str, bytes], stdin: bytes,
                limits: Limits, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment that carries one execution request to ``_docker_boot.py``."""
    # The process limit is the container's pids cgroup: RLIMIT_NPROC would count every
    # container of the same uid on the host together.
    argv = [*prlimit_argv(limits, nproc=False), *command]
    request = {
        "argv": argv,
        "files": {name: base64.b64encode(body).decode() for name, body in files.items()},
        "stdin": base64.b64encode(stdin).decode(),
        "wall_time": limits.wall_time,
        "output": limits.output,
    }
    return {**BASE_ENV, **(env or {}), "AGENTRL_REQUEST": json.dumps(request)}


def parse_report(log: bytes) -> RawOutcome | None:
    """The boot loop's JSON report from the container's stdout (None if it never came)."""
    text = log.decode("utf-8", errors="replace")
    at = text.rfind("\n" + _MARK)
    if at < 0:
        return None
    line = text[at + 1 + len(_MARK):].split("\n", 1)[0]
    try:
        report = json.loads(line)
        return RawOutcome(
            stdout=base64.b64decode(report["stdout"]),
            stderr=base64.b64decode(report["stderr"]),
            stdout_total=int(report["stdout_total"]),
            stderr_total=int(report["stderr_total"]),
            returncode=report["returncode"],
            wall_time=float(report["wall_time"]),
            cpu_time=float(report["cpu_time"]),
            timed_out=bool(report["timed_out"]),
            output_exceeded=bool(report["output_exceeded"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


class ContainerPool:
    """Started, idle containers ready for one execution each; refilled in the background.

    Args:
        start: callable that creates and starts one idle container.
        size: how many to keep ready.
    """

    def __init__(self, start: Any, size: int) -> None:
        if size < 1:
            raise ValueError(f"pool size must be >= 1, got {size}")
        self._start, self.size = start, size
        self._ready: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._starting = 0
        self._closed = False
        self.started = 0
        for _ in range(size):
            self._spawn_one()

    @property
    def ready(self) -> int:
        """Containers waiting to be used."""
        return self._ready.qsize()

    def acquire(self) -> Any:
        """A ready container (started now if none is ready); schedules a replacement."""
        if self._closed:
            raise SandboxError("the container pool was closed")
        try:
            container = self._ready.get_nowait()
        except queue.Empty:
            container = self._start()
            self.started += 1
        self._spawn_one()
        return container

    def close(self) -> None:
        """Remove every idle container."""
        self._closed = True
        while True:
            try:
                _remove(self._ready.get_nowait())
            except queue.Empty:
                return

    def _spawn_one(self) -> None:
        with self._lock:
            if self._closed or self._ready.qsize() + self._starting >= self.size:
                return
            self._starting += 1
        threading.Thread(target=self._fill, daemon=True).start()

    def _fill(self) -> None:
        try:
            container = self._start()
        except SandboxError:
            return
        finally:
            with self._lock:
                self._starting -= 1
        self.started += 1
        if self._closed:
            _remove(container)
        else:
            self._ready.put(container)


def _remove(container: Any) -> None:
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    try:
        container.remove(force=True)
    except (DockerException, RequestException):
        pass  # best effort: the container may already be gone


class DockerBackend(SandboxBackend):
    """Containers through the docker SDK.

    Args:
        image: image with python3 and prlimit (default ``python:3.11-slim``).
        client: a ``docker.DockerClient`` (default ``docker.from_env()``, pinged at start).
        pool_size: idle containers kept ready; 0 means one fresh container per execution.
        pool_limits: container-level limits (memory, processes, file size, tmpfs size) of
            pooled containers, fixed when they start; wall time, CPU time and output
            still come from each execution's ``limits``.
        user: ``uid:gid`` the program runs as (non-root).
    """

    name = "docker"
    isolated = True

    def __init__(self, *, image: str = DEFAULT_IMAGE, client: Any = None, pool_size: int = 0,
                 pool_limits: Limits | None = None, user: str = "65534:65534") -> None:
        self.image, self.user = image, user
        self.pool_limits = pool_limits or Limits()
        self.client = client if client is not None else _connect()
        self._boot = resources.files("agentrl.sandbox").joinpath("_docker_boot.py").read_text()
        self.pool = ContainerPool(self._start_idle, pool_size) if pool_size else None

    def execute(
        self,
        command: Sequence[str],
        *,
        files: Files | None = None,
        stdin: str | bytes = b"",
        limits: Limits | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult:
        limits = limits or Limits()
        data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
        environment = request_env(command, check_files(files), data, limits, env)
        boot = ["python3", "-I", "-c", self._boot]
        if self.pool is not None:
            log = self._run_pooled(boot, environment, limits)
        else:
            log = self._run_fresh(boot, environment, limits)
        raw = parse_report(log)
        if raw is None:
            raise SandboxError("the container ended without a report: "
                               + log[-500:].decode("utf-8", errors="replace"))
        return to_result(raw, raw.returncode, limits)

    def close(self) -> None:
        """Remove pooled containers."""
        if self.pool is not None:
            self.pool.close()

    # -- internals ---------------------------------------------------------------------

    def _options(self, limits: Limits) -> dict[str, Any]:
        return container_options(limits, image=self.image, user=self.user)

    def _run_fresh(self, boot: list[str], environment: dict[str, str], limits: Limits) -> bytes:
        from requests.exceptions import RequestException

        options = self._options(limits)
        options["environment"] = environment
        container = self._call(lambda: self.client.containers.create(command=boot, **options))
        try:
            self._call(container.start)
            try:
                container.wait(timeout=limits.wall_time + _GRACE)
            except RequestException:  # the host-side deadline passed
                self._call(container.kill)
            return self._call(lambda: container.logs(stdout=True, stderr=False))
        finally:
            _remove(container)

    def _run_pooled(self, boot: list[str], environment: dict[str, str], limits: Limits) -> bytes:
        if self.pool is None:
            raise SandboxError("this docker backend has no pool")
        container = self.pool.acquire()
        result: list[Any] = []

        def run() -> None:
            result.append(container.exec_run(boot, environment=environment, user=self.user,
                                             workdir="/work", demux=True))

        worker = threading.Thread(target=run, daemon=True)
        try:
            worker.start()
            worker.join(limits.wall_time + _GRACE)
            if not result:
                raise SandboxError("the pooled container did not answer in time")
            _, (stdout, _stderr) = result[0]
            return stdout or b""
        finally:
            _remove(container)

    def _start_idle(self) -> Any:
        options = self._options(self.pool_limits)
        container = self._call(lambda: self.client.containers.create(
            command=["sleep", "infinity"], **options))
        self._call(container.start)
        return container

    @staticmethod
    def _call(fn: Any) -> Any:
        from docker.errors import DockerException

        try:
            return fn()
        except DockerException as err:
            raise SandboxError(f"docker failed: {err}") from err


def _connect() -> Any:
    try:
        import docker
    except ImportError as err:
        raise SandboxUnavailableError(
            "the docker backend needs the docker SDK: pip install 'agentrl[docker]'"
        ) from err
    if not os.environ.get("DOCKER_HOST") and not os.path.exists("/var/run/docker.sock"):
        raise SandboxUnavailableError(
            "no Docker engine: /var/run/docker.sock does not exist and DOCKER_HOST is not "
            "set; start dockerd (or point DOCKER_HOST at an engine), or use the bwrap backend"
        )
    client = None
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as err:
        if client is not None:
            client.close()
        raise SandboxUnavailableError(
            f"no Docker engine is reachable ({err}); start dockerd or set DOCKER_HOST, "
            "or use the bwrap backend"
        ) from err
    return client
