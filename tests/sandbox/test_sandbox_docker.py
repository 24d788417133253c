"""The docker backend: container options, request/report mapping and pool bookkeeping.

The first tests use ``FakeDockerClient``, which runs each container's command for real
in a bwrap sandbox (the boot loop that would run in the container included), so they
run without an engine. Tests against a real engine are marked ``docker`` and skip with
the reason when none is reachable; ``.ci/setup.sh --tests`` starts one, so in CI they
run (the adversarial suite runs on docker too, fresh and pooled containers).
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import time

import pytest
import requests

from agentrl.errors import SandboxError
from agentrl.sandbox import Limits, Status
from agentrl.sandbox._common import BASE_ENV
from agentrl.sandbox.docker import (
    DockerBackend,
    container_options,
    parse_report,
    request_env,
    spawn_argv,
)
from agentrl.sandbox.docker_image import LOCAL_IMAGE, RECIPE_LABEL, ensure_image, recipe_id

from .conftest import docker_backend_or_skip


class FakeContainer:
    """A container whose start/exec run the command in a real bwrap sandbox."""

    def __init__(self, client: FakeDockerClient, command: list[str], options: dict) -> None:
        self.client, self.command, self.options = client, command, options
        self.id = f"fake{next(client.ids)}"
        self.output = b""
        self.removed = False
        self.attrs: dict = {"State": {"OOMKilled": False}}

    def start(self) -> None:
        self.client.events.append(("start", self.id))
        if self.command[0] == "python3" and not self.client.hang:
            self.output = self.client.run(self.command, self.options["environment"])

    def wait(self, timeout: float) -> dict:
        if self.client.hang:
            raise requests.exceptions.ReadTimeout("fake timeout")
        return {"StatusCode": 0}

    def reload(self) -> None:
        pass

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
    # The boot loop is root with just the capabilities to drop to the program's uid.
    assert options["user"] == "0:0" and options["cap_add"] == ["SETUID", "SETGID", "KILL"]
    assert options["security_opt"][0] == "no-new-privileges"
    profile = json.loads(options["security_opt"][1].removeprefix("seccomp="))
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    denied = {name for rule in profile["syscalls"] if "args" not in rule
              for name in rule["names"]}
    assert {"ptrace", "pidfd_getfd", "keyctl", "mount", "bpf", "clone3"} <= denied
    assert options["mem_limit"] == options["memswap_limit"] == 256 * 2**20
    assert options["pids_limit"] == 32
    assert options["tmpfs"]["/work"] == f"size={8 * 2**20},mode=1777"
    ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in options["ulimits"]}
    assert ulimits["cpu"] == (3, 4)  # ceil(2.5) soft, +1 hard
    assert ulimits["fsize"] == (2**20, 2**20) and ulimits["nofile"] == (64, 64)
    assert options["environment"] == dict(BASE_ENV)  # nothing from the host
    pooled = container_options(limits, image="img:1", ulimits=False)
    assert [u["Name"] for u in pooled["ulimits"]] == ["core"]  # the rest per execution


def test_spawn_argv_runs_unprivileged_without_capabilities():
    limits = Limits(memory=128 * 2**20, processes=16, cpu_time=2)
    argv = spawn_argv("/usr/bin/docker", ["python3", "-c", "pass"], limits, image="img:1",
                      name="n1", uid=1234)
    assert argv[:3] == ["/usr/bin/docker", "run", "-i"]
    flags = " ".join(argv)
    for flag in ("--user 1234:1234", "--network none", "--read-only", "--cap-drop ALL",
                 "--security-opt no-new-privileges", f"--memory {128 * 2**20}",
                 f"--memory-swap {128 * 2**20}", "--pids-limit 16", "--ulimit cpu=2:3",
                 "--init", "--rm", "--name n1"):
        assert flag in flags
    assert "--cap-add" not in argv
    at = argv.index("img:1")
    assert argv[at + 1] == "/usr/bin/prlimit" and argv[-3:] == ["python3", "-c", "pass"]
    sessions = spawn_argv("docker", ["x"], limits, image="i", name="n", uid=1, cpu_limit=False)
    assert not any(a.startswith("cpu=") or a.startswith("--cpu") for a in sessions)


def test_request_env_carries_files_stdin_and_limits():
    env = request_env(["python3", "-c", "pass"], {"a/b.txt": b"hi"}, b"in",
                      Limits(wall_time=3, output=100), {"X": "1"})
    request = json.loads(env["AGENTRL_REQUEST"])
    assert request["uid"] == 65534  # the boot loop starts the program as this uid
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
    backend = DockerBackend(client=client, build_image=False)
    result = backend.run_python("import sys\nprint(open('f.txt').read(), sys.stdin.read())",
                                files={"f.txt": "file"}, stdin="input")
    assert result.status is Status.OK and result.stdout == "file input\n"
    crash = backend.run_python("raise ValueError('boom')")
    assert crash.status is Status.RUNTIME_ERROR and "ValueError: boom" in crash.stderr
    loud = backend.run_python("print('x' * 5000)", limits=Limits(output=100))
    assert loud.status is Status.OUTPUT_LIMIT and len(loud.stdout) == 100
    slow = backend.run_python("import time\ntime.sleep(30)", limits=Limits(wall_time=1))
    assert slow.status is Status.TIMEOUT
    backend.close()  # used containers are removed in the background; close waits for it
    created = client.containers.created
    assert len(created) == 4 and all(c.removed for c in created)  # nothing left behind


def test_host_side_timeout_kills_and_removes_the_container(bwrap):
    client = FakeDockerClient(bwrap, hang=True)
    with pytest.raises(SandboxError, match="without a report"):
        DockerBackend(client=client, build_image=False).run_python(
            "print(1)", limits=Limits(wall_time=1))
    (container,) = client.containers.created
    assert ("kill", container.id) in client.events and container.removed


def test_pool_bookkeeping(bwrap):
    client = FakeDockerClient(bwrap)
    backend = DockerBackend(client=client, pool_size=2, build_image=False)
    assert backend.pool is not None
    deadline = time.monotonic() + 10
    while backend.pool.ready < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend.pool.ready == 2
    assert backend.run_python("print(3 * 3)").stdout == "9\n"
    while backend.pool.ready < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend.pool.ready == 2  # replaced in the background
    backend.close()
    used = [c for c in client.containers.created if ("exec", c.id) in client.events]
    assert len(used) == 1 and used[0].removed  # one execution per container, then gone
    assert used[0].command == ["sleep", "infinity"]
    assert all(c.removed for c in client.containers.created)
    with pytest.raises(SandboxError, match="closed"):
        backend.run_python("print(1)")


def test_pool_serves_only_executions_with_its_container_limits(bwrap):
    client = FakeDockerClient(bwrap)
    backend = DockerBackend(client=client, pool_size=1, build_image=False)
    assert backend.run_python("print(1)", limits=Limits(wall_time=5)).stdout == "1\n"
    assert backend.run_python("print(2)", limits=Limits(processes=8)).stdout == "2\n"
    fresh = [c for c in client.containers.created if c.command[0] == "python3"]
    assert len(fresh) == 1 and fresh[0].options["pids_limit"] == 8  # not the pool's 64
    backend.close()


# -- against a real engine ---------------------------------------------------------------


@pytest.mark.docker
def test_real_engine_runs_python():
    backend = docker_backend_or_skip()
    code = ("import os, re\nprint(6 * 7, os.getuid(), os.getgid(), "
            "open('/proc/self/oom_score_adj').read().strip(), "
            "re.findall(r'CapEff:\\s*(\\w+)', open('/proc/self/status').read())[0])")
    result = backend.run_python(code)
    # Unprivileged without capabilities, and the OOM killer's first choice (not the boot
    # loop that reports).
    assert result.status is Status.OK
    assert result.stdout == "42 65534 65534 1000 0000000000000000\n", result.stderr


@pytest.mark.docker
def test_local_image_is_built_from_the_host_and_kept():
    backend = docker_backend_or_skip()
    assert backend.image == LOCAL_IMAGE
    image = backend.client.images.get(LOCAL_IMAGE)
    assert image.labels[RECIPE_LABEL] == recipe_id()
    assert image.attrs["Size"] < 120 * 2**20  # python3 and its libraries only
    assert ensure_image(backend.client) is False  # up to date: not rebuilt
    code = "import hashlib, sqlite3, ssl, decimal, ctypes, json\nprint(hashlib.md5(b'').hexdigest())"
    result = backend.run_python(code)
    assert result.stdout == "d41d8cd98f00b204e9800998ecf8427e\n", result.stderr


FORGE = """
import json, os
fake = {"stdout": "", "stderr": "", "stdout_total": 0, "stderr_total": 0, "returncode": 0,
        "timed_out": False, "output_exceeded": False, "wall_time": 0.1, "cpu_time": 0.1}
def attempt(fn):
    try:
        fn()
        return "done"
    except OSError as e:
        return type(e).__name__
line = "\\nAGENTRL-RESULT " + json.dumps(fake) + "\\n"
print(attempt(lambda: open("/proc/1/fd/1", "w").write(line)))
print(attempt(lambda: open("/proc/%d/fd/1" % os.getppid(), "w").write(line)))
print(attempt(lambda: open("/proc/1/environ").read()))
print(attempt(lambda: os.kill(os.getppid(), 9)))
raise SystemExit(3)
"""


@pytest.mark.docker
@pytest.mark.parametrize("pooled", [False, True], ids=["fresh", "pooled"])
def test_program_cannot_reach_the_boot_loop_or_forge_its_report(pooled):
    backend = docker_backend_or_skip(pooled=pooled)
    result = backend.run_python(FORGE)
    assert result.stdout.split() == ["PermissionError"] * 4, result.stderr
    assert result.status is Status.RUNTIME_ERROR and result.exit_code == 3


@pytest.mark.docker
def test_exit_status_forgery_through_pidfd_getfd_fails():
    # The issue-9 reproducer that made bwrap report exit 0 for a failing program.
    code = ("import ctypes,os,struct,time\nl=ctypes.CDLL(None)\n"
            "fd=l.syscall(438,l.syscall(434,1,0),4,0)\n"
            "print(fd)\ntime.sleep(0.2)\nraise SystemExit(1)")
    result = docker_backend_or_skip().run_python(code)
    assert result.stdout == "-1\n" and result.exit_code == 1
    assert result.status is Status.RUNTIME_ERROR


@pytest.mark.docker
def test_pooled_containers_serve_one_execution_each():
    backend = docker_backend_or_skip(pooled=True)
    marker = f"agentrl-{secrets.token_hex(4)}"
    first = backend.run_python(f"open('/tmp/{marker}', 'w').write('x')\nprint('wrote')")
    second = backend.run_python(f"import os\nprint(os.path.exists('/tmp/{marker}'))")
    assert first.stdout == "wrote\n" and second.stdout == "False\n"


def _spawned_containers(backend) -> list:
    """Containers started by ``spawn`` (named ``agentrl-<hex>``; pooled ones are not)."""
    found = backend.client.containers.list(all=True, filters={"label": "agentrl.sandbox"})
    return [c.name for c in found if c.name.startswith("agentrl-")]


@pytest.mark.docker
def test_session_and_spawned_containers_are_removed():
    backend = docker_backend_or_skip()
    with backend.open_session(Limits(wall_time=5)) as session:
        assert session.run("import os\nx = os.getuid()").status is Status.OK
        assert session.run("x").stdout == "65534\n"
        assert len(_spawned_containers(backend)) == 1
    assert _spawned_containers(backend) == []  # removed when the session closed


def test_bench_docker_rows_say_why_without_an_engine(monkeypatch, tmp_path):
    from agentrl.bench import sandbox as bench

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    result = bench.run_docker_cases(iterations=2, warmup=0, concurrency=2)
    assert "cases" not in result and "Docker engine" in str(result["skipped"])


@pytest.mark.docker
def test_bench_docker_rows_fresh_and_pooled():
    from agentrl.bench import sandbox as bench

    docker_backend_or_skip()
    result = bench.run_docker_cases(iterations=2, warmup=0, concurrency=2)
    cases = result["cases"]
    assert set(cases) == {"docker", "docker-pool"}
    for row in cases.values():
        assert row["n"] == 2 and row["p99_ms"] >= row["p50_ms"] > 0 and row["exec_per_s"] > 0


@pytest.mark.docker
def test_pooled_spawn_execs_into_a_pool_container_and_removes_it():
    from agentrl.sandbox._proc import terminate

    backend = docker_backend_or_skip(pooled=True)
    code = ("import os, re\nprint(os.getuid(), os.access('/proc/1/fd', os.R_OK), "
            "re.findall(r'CapEff:\\s*(\\w+)', open('/proc/self/status').read())[0], "
            "flush=True)\ninput()")
    proc = backend.spawn(["python3", "-I", "-c", code], Limits())
    try:
        assert proc.args[1] == "exec"  # a started pool container, not docker run
        # No capabilities, and pid 1 (root) is out of reach.
        assert proc.stdout.readline() == b"65534 False 0000000000000000\n"
        used = proc.args[proc.args.index("/work") + 1]
    finally:
        terminate(proc)
    assert used not in {c.id for c in backend.client.containers.list(all=True)}
