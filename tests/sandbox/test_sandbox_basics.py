"""The sandbox interface on the real bwrap backend: results, files, env, limits, errors."""

from __future__ import annotations

import asyncio
import resource
import signal
import warnings

import pytest

from agentrl.errors import ConfigError, SandboxError, SandboxUnavailableError
from agentrl.sandbox import BACKENDS, Limits, Status, get_backend
from agentrl.sandbox._common import check_files, classify, prlimit_argv, rlimit_values
from agentrl.sandbox._proc import RawOutcome
from agentrl.sandbox.bwrap import BwrapBackend
from agentrl.sandbox.local import UnisolatedWarning


def raw(**kw) -> RawOutcome:
    base = dict(stdout=b"", stderr=b"", stdout_total=0, stderr_total=0, returncode=0,
                wall_time=0.1, cpu_time=0.0, timed_out=False, output_exceeded=False)
    return RawOutcome(**{**base, **kw})


def test_stdout_stderr_exit_code(bwrap):
    result = bwrap.run_python("import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)")
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert result.exit_code == 3
    assert result.status is Status.RUNTIME_ERROR
    assert not result.ok and not result.truncated


def test_ok_files_stdin_and_workdir(bwrap):
    files = {"data/in.txt": "hello", "blob.bin": b"\x00\x01"}
    code = ("import os,sys\nprint(open('data/in.txt').read(), len(open('blob.bin','rb').read()),"
            " sys.stdin.read(), os.getcwd())")
    result = bwrap.run_python(code, files=files, stdin="typed")
    assert result.status is Status.OK and result.exit_code == 0
    assert result.stdout == "hello 2 typed /work\n"


def test_environment_is_cleared(bwrap, monkeypatch):
    monkeypatch.setenv("AGENTRL_TEST_SECRET", "s3cr3t")
    result = bwrap.execute(["/usr/bin/env"], env={"EXTRA": "1"})
    names = {line.split("=", 1)[0] for line in result.stdout.splitlines()}
    assert "AGENTRL_TEST_SECRET" not in names
    assert {"PATH", "HOME", "EXTRA"} <= names


def test_runs_unprivileged_without_network(bwrap):
    code = "import os,socket\nprint(os.getuid(), socket.if_nameindex())"
    result = bwrap.run_python(code)
    uid, interfaces = result.stdout.split(" ", 1)
    assert int(uid) != 0
    assert "eth" not in interfaces  # only the (down) loopback of a fresh net namespace


def test_cpu_time_is_measured(bwrap):
    result = bwrap.run_python("s = 0\nfor i in range(3_000_000): s += i\nprint(s)")
    # sum(range(n)) = n(n-1)/2 = 3e6 * 2999999 / 2
    assert result.stdout.strip() == str(3_000_000 * 2_999_999 // 2)
    assert 0.02 < result.cpu_time <= result.wall_time + 0.05


def test_async_runs_concurrently(bwrap):
    async def main():
        return await asyncio.gather(*(bwrap.arun_python(f"print({i} * 2)") for i in range(4)))

    results = asyncio.run(main())
    assert [r.stdout.strip() for r in results] == ["0", "2", "4", "6"]


def test_bad_file_names_are_config_errors():
    with pytest.raises(ConfigError, match="relative path"):
        check_files({"/etc/x": "a"})
    with pytest.raises(ConfigError, match="relative path"):
        check_files({"../x": "a"})
    with pytest.raises(ConfigError, match="str or bytes"):
        check_files({"x": 3})  # type: ignore[dict-item]


def test_limits_validation():
    with pytest.raises(ConfigError, match="wall_time"):
        Limits(wall_time=0)
    with pytest.raises(ConfigError, match="processes"):
        Limits(processes=2)
    with pytest.raises(ConfigError, match="memory"):
        Limits(memory=1024)
    with pytest.raises(ConfigError, match="output"):
        Limits(output=-1)


def test_prlimit_arguments():
    argv = prlimit_argv(Limits(cpu_time=2.5, memory=256 * 2**20, processes=16))
    assert argv[0] == "/usr/bin/prlimit" and argv[-1] == "--"
    assert f"--as={256 * 2**20}" in argv and "--nproc=16" in argv
    assert "--cpu=3:4" in argv  # ceil(2.5) soft, +1 s hard


def test_classify_statuses():
    limits = Limits(cpu_time=1)
    assert classify(raw(), 0, limits) is Status.OK
    assert classify(raw(timed_out=True), None, limits) is Status.TIMEOUT
    assert classify(raw(output_exceeded=True), None, limits) is Status.OUTPUT_LIMIT
    assert classify(raw(), -signal.SIGXCPU, limits) is Status.TIMEOUT
    assert classify(raw(cpu_time=1.2), -signal.SIGKILL, limits) is Status.TIMEOUT
    assert classify(raw(stderr=b"...\nMemoryError\n"), 1, limits) is Status.MEMORY_LIMIT
    assert classify(raw(stderr=b"ValueError\n"), 1, limits) is Status.RUNTIME_ERROR


def test_rlimit_values_match_the_prlimit_arguments():
    values = dict((res, (soft, hard)) for res, soft, hard in
                  rlimit_values(Limits(cpu_time=2.5, memory=256 * 2**20, processes=16)))
    assert values[resource.RLIMIT_AS] == (256 * 2**20, 256 * 2**20)
    assert values[resource.RLIMIT_NPROC] == (16, 16)
    assert values[resource.RLIMIT_CPU] == (3, 4)  # ceil(2.5) soft, +1 s hard
    assert values[resource.RLIMIT_CORE] == (0, 0)
    assert resource.RLIMIT_CPU not in dict((r[0], r) for r in rlimit_values(Limits(), cpu=False))


def test_limits_are_in_force_inside_the_sandbox(bwrap):
    code = ("import resource as r\nfor n in ('AS', 'NPROC', 'CPU', 'FSIZE', 'NOFILE', 'CORE'):\n"
            "    print(n, *r.getrlimit(getattr(r, 'RLIMIT_' + n)))")
    limits = Limits(cpu_time=2.5, memory=300 * 2**20, processes=17, file_size=2**20,
                    open_files=77)
    result = bwrap.run_python(code, limits=limits)
    assert result.stdout.split("\n")[:-1] == [
        f"AS {300 * 2**20} {300 * 2**20}", "NPROC 17 17", "CPU 3 4",
        f"FSIZE {2**20} {2**20}", "NOFILE 77 77", "CORE 0 0"]


def test_cpu_time_covers_the_programs_children(bwrap):
    # The child burns >= 0.3 s of CPU (its own process_time says so) and is waited for.
    code = ("import subprocess, sys\nsubprocess.run([sys.executable, '-c', "
            "'import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.3: pass'])")
    result = bwrap.run_python(code, limits=Limits(wall_time=20))
    assert result.ok, result.stderr
    assert 0.3 <= result.cpu_time <= result.wall_time + 0.05


def test_missing_command_is_a_program_error_like_in_a_shell(bwrap):
    result = bwrap.execute(["no-such-command-agentrl"])
    assert result.status is Status.RUNTIME_ERROR and result.exit_code == 127
    assert "No such file" in result.stderr


def test_get_backend_names():
    assert BACKENDS == ("bwrap", "docker", "local")
    with pytest.raises(ConfigError, match="unknown sandbox backend 'nope'"):
        get_backend("nope")
    assert get_backend("bwrap").name == "bwrap"


def test_local_backend_warns_and_is_marked_unisolated():
    with pytest.warns(UnisolatedWarning, match="does not isolate"):
        backend = get_backend("local")
    assert backend.isolated is False
    assert backend.run_python("print(2 + 2)").stdout == "4\n"


def test_missing_bwrap_says_what_to_install():
    with pytest.raises(SandboxUnavailableError, match="install the Debian package 'bubblewrap'"):
        BwrapBackend(bwrap=None if False else "/nonexistent/bwrap").execute(["true"])


def test_broken_sandbox_is_an_infrastructure_error_not_a_status():
    backend = BwrapBackend(ro_binds=("/nonexistent-dir-for-agentrl-test",), check=False)
    with pytest.raises(SandboxError, match="bwrap failed before the program started"):
        backend.run_python("print(1)")


def test_program_printing_bwrap_like_error_is_still_a_program_result(bwrap):
    result = bwrap.run_python("import sys\nsys.stderr.write('bwrap: fake\\n')\nsys.exit(1)")
    assert result.status is Status.RUNTIME_ERROR and result.exit_code == 1


def test_local_backend_runs_in_a_temporary_directory(local):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = local.run_python("import os; print(os.getcwd())", files={"a.txt": "x"})
    assert result.stdout.startswith("/tmp/agentrl-local-")


def test_execute_many_reports_sandbox_faults_per_item(bwrap):
    results = bwrap.execute_many([["/bin/echo", str(i)] for i in range(5)], workers=3)
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(5)]
    broken = BwrapBackend(ro_binds=("/nonexistent-dir-for-agentrl-test",), check=False)
    (failed,) = broken.execute_many([["/bin/true"]])
    assert failed.status is Status.SANDBOX_ERROR and "Can't find source path" in failed.stderr
