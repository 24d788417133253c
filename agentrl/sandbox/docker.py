"""The Docker backend, through the docker SDK (docker-py).

Each execution runs in a container with no network, a read-only root, tmpfs work
directory and /tmp, ``no-new-privileges``, cgroup memory (swap included) and pids
limits, rlimits, and a seccomp profile refusing the same system calls as the bwrap
backend's filter (it replaces docker's default profile; see ``_docker_options``).
Inside, a small Python loop (``_docker_boot.py``) runs as root with every capability
dropped but SETUID/SETGID/KILL, writes the files, starts the program as the unprivileged
``uid`` (65534) with capped output and a wall deadline, kills whatever the program left
running, and reports one JSON line. The program cannot signal, trace or write as that
loop, so it cannot forge the report; the host also kills the container if it overruns.

Containers are short-lived (``pool_size=0``) or taken from a :class:`ContainerPool` of
started, idle containers; a pooled container serves exactly one execution and is then
removed, so nothing leaks between executions.

Long-lived processes with pipes (:meth:`DockerBackend.spawn`: persistent sessions and
the two processes of :class:`~agentrl.sandbox.grading.FunctionGrader`) run through the
``docker`` command line client (``docker run -i``), as the unprivileged user with no
capabilities at all, under ``docker-init``.

By default the image is :data:`~agentrl.sandbox.docker_image.LOCAL_IMAGE`, built from the
host's python3 when missing (no registry is needed).
"""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import functools
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from agentrl.errors import SandboxError, SandboxUnavailableError
from agentrl.sandbox import _proc
from agentrl.sandbox._common import BASE_ENV, check_files, prlimit_argv, to_result
from agentrl.sandbox._docker_options import (
    container_options,
    exec_argv,
    seccomp_profile,
    spawn_argv,
)
from agentrl.sandbox._docker_pool import ContainerPool, remove_container
from agentrl.sandbox._proc import RawOutcome
from agentrl.sandbox.base import ExecResult, Files, Limits, SandboxBackend, Status
from agentrl.sandbox.docker_image import LOCAL_IMAGE, ensure_image

__all__ = ["DockerBackend", "ContainerPool", "DockerOutcome", "container_options", "parse_report",
           "request_env", "spawn_argv", "seccomp_profile", "connect", "DEFAULT_IMAGE"]

#: Image used unless another is given (built from the host when missing); another image
#: must have python3 and util-linux's prlimit.
DEFAULT_IMAGE = LOCAL_IMAGE
_MARK = "AGENTRL-RESULT "
# Seconds the host waits past the wall time before killing the container itself.
_GRACE = 5.0
# Host environment variables the docker command line client needs to find the engine.
_CLI_ENV = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT",
            "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY", "XDG_RUNTIME_DIR")


def request_env(command: Sequence[str], files: Mapping[str, bytes], stdin: bytes,
                limits: Limits, env: Mapping[str, str] | None = None, *,
                uid: int = 65534) -> dict[str, str]:
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
        "uid": uid,
    }
    return {**BASE_ENV, **(env or {}), "AGENTRL_REQUEST": json.dumps(request)}


@dataclasses.dataclass
class DockerOutcome(RawOutcome):
    """A :class:`RawOutcome` plus what only the container's cgroup knows."""

    oom: bool = False
    """The container's memory cgroup OOM-killed a process of the program."""


def parse_report(log: bytes) -> DockerOutcome | None:
    """The boot loop's JSON report from the container's stdout (None if it never came)."""
    text = log.decode("utf-8", errors="replace")
    at = text.rfind("\n" + _MARK)
    if at < 0:
        return None
    line = text[at + 1 + len(_MARK):].split("\n", 1)[0]
    try:
        report = json.loads(line)
        return DockerOutcome(
            stdout=base64.b64decode(report["stdout"]),
            stderr=base64.b64decode(report["stderr"]),
            stdout_total=int(report["stdout_total"]),
            stderr_total=int(report["stderr_total"]),
            returncode=report["returncode"],
            wall_time=float(report["wall_time"]),
            cpu_time=float(report["cpu_time"]),
            timed_out=bool(report["timed_out"]),
            output_exceeded=bool(report["output_exceeded"]),
            oom=bool(report.get("oom", False)),
        )
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


class DockerBackend(SandboxBackend):
    """Containers through the docker SDK.

    Args:
        image: image with python3 and prlimit (default :data:`DEFAULT_IMAGE`, built from
            the host when missing or stale).
        client: a ``docker.DockerClient`` (default ``docker.from_env()``, pinged at start).
        pool_size: idle containers kept ready; 0 means one fresh container per execution.
        pool_limits: the container-level limits of pooled containers (memory, processes,
            work directory size), fixed when they start. An execution whose ``limits``
            differ in these takes a fresh container instead; every other limit (wall and
            CPU time, output, file size, open files, address space) is applied per
            execution.
        uid: the unprivileged uid (and gid) the program runs as; never 0.
        build_image: build :data:`DEFAULT_IMAGE` when it is the image and is missing.

    Raises:
        SandboxUnavailableError: no engine is reachable, or the default image cannot be built.
    """

    name = "docker"
    isolated = True

    def __init__(self, *, image: str = DEFAULT_IMAGE, client: Any = None, pool_size: int = 0,
                 pool_limits: Limits | None = None, uid: int = 65534,
                 build_image: bool = True) -> None:
        if uid <= 0:
            raise SandboxError(f"the program's uid must be an unprivileged uid, got {uid}")
        self.image, self.uid = image, uid
        self.pool_limits = pool_limits or Limits()
        self.client = client if client is not None else connect()
        if build_image and image == LOCAL_IMAGE:
            ensure_image(self.client, image)
        self._boot = resources.files("agentrl.sandbox").joinpath("_docker_boot.py").read_text()
        self.pool = ContainerPool(self._start_idle, pool_size) if pool_size else None
        # Used containers are removed off the caller's path (see _discard).
        self._remover = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="agentrl-docker-rm")
        self._removing: set[concurrent.futures.Future[None]] = set()
        self._removing_lock = threading.Lock()

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
        environment = request_env(command, check_files(files), data, limits, env, uid=self.uid)
        boot = ["python3", "-I", "-c", self._boot]
        if self.pool is not None and self._fits_pool(limits):
            raw = self._run_pooled(boot, environment, limits)
        else:
            raw = self._run_fresh(boot, environment, limits)
        result = to_result(raw, raw.returncode, limits)
        if raw.oom and not (raw.timed_out or raw.output_exceeded):
            result = dataclasses.replace(result, status=Status.MEMORY_LIMIT)
        return result

    def spawn(self, command: Sequence[str], limits: Limits, *,
              cpu_limit: bool = True) -> subprocess.Popen[bytes]:
        """Start ``command`` in a container of its own with stdin/stdout/stderr pipes
        (sessions, grading): ``docker exec -i`` into a pooled container when the pool's
        limits fit, else ``docker run -i``; either way as the unprivileged uid with no
        capabilities. :func:`agentrl.sandbox._proc.terminate` kills and removes it."""
        docker = shutil.which("docker")
        if docker is None:
            raise SandboxUnavailableError(
                "spawning in a container needs the docker command line client on PATH "
                "(Debian package docker.io or docker-cli)")
        if self.pool is not None and self._fits_pool(limits):
            container = self.pool.acquire()
            argv = exec_argv(docker, container.id, command, limits, uid=self.uid,
                             cpu_limit=cpu_limit)
            cleanup = functools.partial(remove_container, container)
        else:
            name = f"agentrl-{secrets.token_hex(8)}"
            argv = spawn_argv(docker, command, limits, image=self.image, name=name,
                              uid=self.uid, cpu_limit=cpu_limit)
            cleanup = functools.partial(self._remove_named, name)
        env = {key: os.environ[key] for key in _CLI_ENV if key in os.environ}
        try:
            proc = _proc.spawn(argv, env=env)
        except OSError as err:
            cleanup()
            raise SandboxError(f"could not run the docker client ({docker}): {err}") from err
        proc.agentrl_cleanup = cleanup  # type: ignore[attr-defined]
        return proc

    def close(self) -> None:
        """Remove pooled containers; wait until used containers are removed."""
        if self.pool is not None:
            self.pool.close()
        with self._removing_lock:
            pending, self._removing = self._removing, set()
        concurrent.futures.wait(pending)

    # -- internals ---------------------------------------------------------------------

    def _fits_pool(self, limits: Limits) -> bool:
        pool = self.pool_limits
        return (limits.memory, limits.processes, limits.workdir_size) == (
            pool.memory, pool.processes, pool.workdir_size)

    def _options(self, limits: Limits) -> dict[str, Any]:
        return container_options(limits, image=self.image)

    def _run_fresh(self, boot: list[str], environment: dict[str, str],
                   limits: Limits) -> DockerOutcome:
        from requests.exceptions import RequestException

        options = self._options(limits)
        options["environment"] = environment
        container = self._call(lambda: self.client.containers.create(command=boot, **options))
        start = time.monotonic()
        reported = False
        try:
            self._call(container.start)
            try:
                container.wait(timeout=limits.wall_time + _GRACE)
            except RequestException:  # the host-side deadline passed
                self._call(container.kill)
            log = self._call(lambda: container.logs(stdout=True, stderr=False))
            raw = parse_report(log)
            reported = raw is not None
            return raw or self._unreported(log, container, start)
        finally:
            self._discard(container, exited=reported)

    def _unreported(self, log: bytes, container: Any, start: float) -> DockerOutcome:
        """No report came: a memory-limit outcome if the container's cgroup OOM-killed the
        boot loop itself (tmpfs pages left it no room), else a SandboxError."""
        from docker.errors import DockerException
        from requests.exceptions import RequestException

        try:
            container.reload()
            oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
        except (DockerException, RequestException):
            oom = False  # no state to read: the error below says what we know
        if not oom:
            raise SandboxError("the container ended without a report: "
                               + log[-500:].decode("utf-8", errors="replace"))
        return DockerOutcome(stdout=b"", stderr=b"", stdout_total=0, stderr_total=0,
                             returncode=-9, wall_time=time.monotonic() - start, cpu_time=0.0,
                             timed_out=False, output_exceeded=False, oom=True)

    def _run_pooled(self, boot: list[str], environment: dict[str, str],
                    limits: Limits) -> DockerOutcome:
        if self.pool is None:
            raise SandboxError("this docker backend has no pool")
        container = self.pool.acquire()
        result: list[Any] = []

        def run() -> None:
            result.append(container.exec_run(boot, environment=environment, user="0:0",
                                             workdir="/work", demux=True))

        worker = threading.Thread(target=run, daemon=True)
        start = time.monotonic()
        reported = False
        try:
            worker.start()
            worker.join(limits.wall_time + _GRACE)
            if not result:
                raise SandboxError("the pooled container did not answer in time")
            _, (stdout, _stderr) = result[0]
            raw = parse_report(stdout or b"")
            reported = raw is not None
            return raw or self._unreported(stdout or b"", container, start)
        finally:
            self._discard(container, exited=reported)

    def _discard(self, container: Any, *, exited: bool) -> None:
        """Remove a used container: in the background once the boot loop has reported
        (nothing of the program runs any more: the loop killed it all), else now."""
        if not exited:
            remove_container(container)
            return
        future = self._remover.submit(remove_container, container)
        with self._removing_lock:
            self._removing.add(future)
        future.add_done_callback(self._removed)

    def _removed(self, future: concurrent.futures.Future[None]) -> None:
        with self._removing_lock:
            self._removing.discard(future)

    def _start_idle(self) -> Any:
        options = container_options(self.pool_limits, image=self.image, ulimits=False)
        container = self._call(lambda: self.client.containers.create(
            command=["sleep", "infinity"], **options))
        self._call(container.start)
        return container

    def _remove_named(self, name: str) -> None:
        from docker.errors import DockerException
        from requests.exceptions import RequestException

        try:
            self.client.api.remove_container(name, force=True)
        except (DockerException, RequestException):
            pass  # never created, already removed (--rm), or the engine is gone

    @staticmethod
    def _call(fn: Any) -> Any:
        from docker.errors import DockerException

        try:
            return fn()
        except DockerException as err:
            raise SandboxError(f"docker failed: {err}") from err


def connect() -> Any:
    """A pinged ``docker.DockerClient`` from the environment (DOCKER_HOST or the socket).

    Raises:
        SandboxUnavailableError: the SDK is missing or no engine answers (says why).
    """
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
