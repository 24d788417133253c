"""bwrap's spawner and its prestart pool (``BwrapBackend(prestart=N)``), on real bubblewrap.

The adversarial suite also runs on the prestart path (``bwrap-prestart`` in conftest).
"""

from __future__ import annotations

import os

import pytest

from agentrl.errors import ConfigError
from agentrl.sandbox import MIB, Limits, Status
from agentrl.sandbox._prestart import fits
from agentrl.sandbox._spawner import get_spawner
from agentrl.sandbox.bwrap import BwrapBackend

FRESH_CHECK = """
import os
seen = sorted(p for p in ('/work/mark', '/tmp/mark') if os.path.exists(p))
open('/work/mark', 'w').write('x'); open('/tmp/mark', 'w').write('x')
print(seen, sorted(os.listdir('/proc/self/fd')))
"""


def test_prestart_must_be_a_non_negative_int():
    with pytest.raises(ConfigError, match="prestart must be an int >= 0"):
        BwrapBackend(prestart=-1)
    with pytest.raises(ConfigError, match="prestart"):
        BwrapBackend(prestart=True)  # type: ignore[arg-type]


def test_fits_only_when_limits_can_be_lowered_to():
    pooled = Limits()
    assert fits(Limits(memory=256 * MIB, processes=8, cpu_time=1, wall_time=99), pooled)
    assert not fits(Limits(memory=pooled.memory + 1), pooled)
    assert not fits(Limits(processes=pooled.processes + 1), pooled)
    assert not fits(Limits(workdir_size=pooled.workdir_size // 2), pooled)  # fixed at mount


@pytest.mark.parametrize("path", ["fresh", "prestart"])
def test_every_execution_gets_a_clean_sandbox_and_no_harness_fds(path, bwrap, prestarted):
    backend = prestarted if path == "prestart" else bwrap
    for _ in range(3):
        assert backend.wait_prestarted(60)
        result = backend.run_python(FRESH_CHECK)
        # Nothing written by the previous run; only stdio (+ listdir's own fd) is open.
        assert result.stdout == "[] ['0', '1', '2', '3']\n", result.stderr


def test_prestarted_run_has_files_stdin_env_and_the_requests_limits(prestarted):
    assert prestarted.wait_prestarted(60)
    code = ("import os, resource as r, sys\nprint(open('d/in.txt').read(), sys.stdin.read(), "
            "os.environ['EXTRA'], os.getcwd())\nfor n in ('AS', 'NPROC', 'CPU', 'FSIZE'):\n"
            "    print(n, *r.getrlimit(getattr(r, 'RLIMIT_' + n)))")
    limits = Limits(cpu_time=2.5, memory=300 * MIB, processes=17, file_size=MIB)
    result = prestarted.execute([prestarted.python, "-I", "-c", code], files={"d/in.txt": "f"},
                                stdin="s", limits=limits, env={"EXTRA": "e"})
    assert result.stdout.split("\n")[:-1] == [
        "f s e /work", f"AS {300 * MIB} {300 * MIB}", "NPROC 17 17",
        "CPU 3 4",  # ceil(2.5) and +1 s, as on the fresh path (the stub's <1 s rounds away)
        f"FSIZE {MIB} {MIB}"]


def test_prestarted_cpu_time_is_the_programs(prestarted):
    assert prestarted.wait_prestarted(60)
    code = ("import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
            "print(round(time.process_time(), 4))")
    result = prestarted.run_python(code)
    # The process's own CPU clock (it survives exec, so it includes the stub's ~10-20 ms):
    own = float(result.stdout)
    assert own >= 0.3
    # The report covers the 0.3 s loop and (stub subtracted) at most a few ms of sandbox
    # overhead beyond the process's own clock.
    assert 0.3 <= result.cpu_time <= own + 0.015


def test_requests_beyond_the_pool_limits_start_fresh(prestarted):
    limits = Limits(memory=2048 * MIB)
    result = prestarted.run_python(
        "import resource as r\nprint(r.getrlimit(r.RLIMIT_AS)[0])", limits=limits)
    assert result.stdout == f"{2048 * MIB}\n"


def test_close_kills_the_waiting_sandboxes():
    backend = BwrapBackend(prestart=2)
    assert backend.wait_prestarted(60)
    pids = [item.started.pid for item in backend._pool._ready]  # noqa: SLF001
    assert len(pids) == 2 and all(os.path.exists(f"/proc/{pid}") for pid in pids)
    backend.close()
    assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)
    healthy = backend.run_python("print(2 + 2)")  # a closed pool falls back to fresh
    assert healthy.stdout == "4\n"


def test_spawner_is_restarted_after_it_died_and_dead_pooled_sandboxes_are_dropped(bwrap):
    pooled = BwrapBackend(prestart=2)
    try:
        assert pooled.wait_prestarted(60)
        spawner = get_spawner(bwrap.run_as, bwrap.python)
        old = spawner._proc  # noqa: SLF001
        assert old is not None
        old.kill()  # its sandboxes die with it (--die-with-parent), the pooled ones too
        old.wait()
        for backend in (bwrap, pooled):
            result = backend.run_python("print(5)")
            assert result.status is Status.OK and result.stdout == "5\n"
        assert spawner._proc is not old  # noqa: SLF001
        assert pooled.wait_prestarted(60)  # refilled through the new spawner
        assert pooled.run_python("print(6)").stdout == "6\n"
    finally:
        pooled.close()


def test_concurrent_executions_get_their_own_results(bwrap):
    commands = [[bwrap.python, "-I", "-c", f"import time; time.sleep(0.0{i % 3}); print({i})"]
                for i in range(12)]
    results = bwrap.execute_many(commands, workers=6)
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(12)]
