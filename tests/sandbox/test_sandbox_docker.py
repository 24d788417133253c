"""The docker backend: container options, request/report mapping and pool bookkeeping.

No Docker engine runs on the CI machines, so these use ``FakeDockerClient``, which runs
each container's command for real in a bwrap sandbox (the boot loop that would run in
the container included). Tests against a real engine are marked ``docker`` and skip
with the reason when none is reachable (the adversarial suite also runs on docker then).
"""

from __future__ import annotations

import base64
import itertools
import json
import time

import pytest
import requests

from agentrl.errors import SandboxError
from agentrl.sandbox import Limits, Status
from agentrl.sandbox._common import BASE_ENV
from agentrl.sandbox.docker import DockerBackend, container_options, parse_report, request_env

from .conftest import docker_backend_or_skip


class FakeContainer:
    """A container whose start/exec run the command in a real bwrap sandbox."""

    def __init__(self, client: FakeDockerClient, command: list[str], options: dict) -> None:
        self.client, self.command, self.options = client, command, options
        self.id = f"fake{next(client.ids)}"
        self.output = b""
        self.removed = False

    def start(self) -> None:
        self.client.events.append(("start", self.id))
        if self.command[0] == "python3" and not self.client.hang:
            self.output = self.client.run(self.command, self.options["environment"])

    def wait(self, timeout: float) -> dict:
        if self.client.hang:
            raise requests.exceptions.ReadTimeout("fake timeout")
        return {"StatusCode": 0}

    def logs(self, stdout: bool = True, stderr: bool = True) -> bytes:
        return self.output

    def kill(self) -> None:
        self.client.events.append(("kill", self.id))

    def remove(self, force: bool = False) -> None:
        self.removed = True
        self.client.events.append(("remove", self.id))

    def exec_run(self, cmd, environment, user, workdir, demux):
        self.client.events.append(("exec", self.id))
        return 0, (self.client.run(cmd, environment), b"")


class FakeContainers:
    def __init__(self, client: FakeDockerClient) -> None:
        self.client = client
        self.created: list[FakeContainer] = []

    def create(self, command: list[str], **options) -> FakeContainer:
        container = FakeContainer(self.client, command, options)
        self.created.append(container)
        return container


class FakeDockerClient:
    """Stands in for ``docker.DockerClient``; ``backend`` really runs the commands."""

    def __init__(self, backend, hang: bool = False) -> None:
        self.backend, self.hang = backend, hang
        self.ids = itertools.count()
        self.events: list[tuple[str, str]] = []
        self.containers = FakeContainers(self)

    def ping(self) -> bool:
        return True

    def run(self, command: list[str], environment: dict[str, str]) -> bytes:
        extra = {k: v for k, v in environment.items() if k not in BASE_ENV}
        result = self.backend.execute([self.backend.python, *command[1:]], env=extra,
                                      limits=Limits(output=8 * 2**20, wall_time=30))
        return result.stdout.encode()


def test_container_options_isolate_and_limit():
    limits = Limits(memory=256 * 2**20, processes=32, cpu_time=2.5, file_size=2**20,
                    open_files=64, workdir_size=8 * 2**20)
    options = container_options(limits, image="img:1")
    assert options["network_mode"] == "none" and options["network_disabled"] is True
    assert options["read_only"] is True and options["cap_drop"] == ["ALL"]
    assert options["security_opt"] == ["no-new-privileges"]
    assert options["user"] == "65534:65534"  # never root
    assert options["mem_limit"] == options["memswap_limit"] == 256 * 2**20
    assert options["pids_limit"] == 32
    assert options["tmpfs"]["/work"] == f"size={8 * 2**20},mode=1777"
    ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in options["ulimits"]}
    assert ulimits["cpu"] == (3, 4)  # ceil(2.5) soft, +1 hard
    assert ulimits["fsize"] == (2**20, 2**20) and ulimits["nofile"] == (64, 64)
    assert options["environment"] == dict(BASE_ENV)  # nothing from the host


def test_request_env_carries_files_stdin_and_limits():
    env = request_env(["python3", "-c", "pass"], {"a/b.txt": b"hi"}, b"in",
                      Limits(wall_time=3, output=100), {"X": "1"})
    request = json.loads(env["AGENTRL_REQUEST"])
    assert request["argv"][0] == "/usr/bin/prlimit"
    assert not any(a.startswith("--nproc") for a in request["argv"])  # pids cgroup instead
    assert request["argv"][-3:] == ["python3", "-c", "pass"]
    assert base64.b64decode(request["files"]["a/b.txt"]) == b"hi"
    assert base64.b64decode(request["stdin"]) == b"in"
    assert (request["wall_time"], request["output"], env["X"]) == (3, 100, "1")


def test_parse_report():
    report = {"stdout": base64.b64encode(b"ok").decode(), "stderr": "", "stdout_total": 2,
              "stderr_total": 0, "returncode": 0, "timed_out": False,
              "output_exceeded": False, "wall_time": 0.5, "cpu_time": 0.25}
    log = b"noise\nAGENTRL-RESULT fake\n\nAGENTRL-RESULT " + json.dumps(report).encode() + b"\n"
    raw = parse_report(log)
    assert raw is not None and raw.stdout == b"ok" and raw.cpu_time == 0.25
    assert parse_report(b"nothing here") is None
    assert parse_report(b"\nAGENTRL-RESULT {broken") is None


def test_fresh_containers_end_to_end_with_fake_client(bwrap):
    client = FakeDockerClient(bwrap)
    backend = DockerBackend(client=client)
    result = backend.run_python("import sys\nprint(open('f.txt').read(), sys.stdin.read())",
                                files={"f.txt": "file"}, stdin="input")
    assert result.status is Status.OK and result.stdout == "file input\n"
    crash = backend.run_python("raise ValueError('boom')")
    assert crash.status is Status.RUNTIME_ERROR and "ValueError: boom" in crash.stderr
    loud = backend.run_python("print('x' * 5000)", limits=Limits(output=100))
    assert loud.status is Status.OUTPUT_LIMIT and len(loud.stdout) == 100
    slow = backend.run_python("import time\ntime.sleep(30)", limits=Limits(wall_time=1))
    assert slow.status is Status.TIMEOUT
    created = client.containers.created
    assert len(created) == 4 and all(c.removed for c in created)  # nothing left behind


def test_host_side_timeout_kills_and_removes_the_container(bwrap):
    client = FakeDockerClient(bwrap, hang=True)
    with pytest.raises(SandboxError, match="without a report"):
        DockerBackend(client=client).run_python("print(1)", limits=Limits(wall_time=1))
    (container,) = client.containers.created
    assert ("kill", container.id) in client.events and container.removed


def test_pool_bookkeeping(bwrap):
    client = FakeDockerClient(bwrap)
    backend = DockerBackend(client=client, pool_size=2)
    assert backend.pool is not None
    deadline = time.monotonic() + 10
    while backend.pool.ready < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend.pool.ready == 2
    assert backend.run_python("print(3 * 3)").stdout == "9\n"
    while backend.pool.ready < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend.pool.ready == 2  # replaced in the background
    used = [c for c in client.containers.created if ("exec", c.id) in client.events]
    assert len(used) == 1 and used[0].removed  # one execution per container, then gone
    assert used[0].command == ["sleep", "infinity"]
    backend.close()
    assert all(c.removed for c in client.containers.created)
    with pytest.raises(SandboxError, match="closed"):
        backend.run_python("print(1)")


@pytest.mark.docker
def test_real_engine_runs_python():
    backend = docker_backend_or_skip()
    result = backend.run_python("print(6 * 7)")
    assert result.status is Status.OK and result.stdout == "42\n"
