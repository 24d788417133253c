"""Persistent sessions and the warm pool, on the real bwrap backend (and local)."""

from __future__ import annotations

import asyncio
import time

import pytest

from agentrl.errors import SandboxError
from agentrl.sandbox import MIB, Limits, Session, SessionPool, Status


@pytest.fixture
def session(bwrap):
    with bwrap.open_session(Limits(wall_time=2, cpu_time=1)) as s:
        yield s


def test_state_persists_across_calls(session):
    assert session.run("x = 20\ny = 22").status is Status.OK
    result = session.run("print('sum'); x + y")
    assert result.stdout == "sum\n42\n"  # the last expression's repr, as in a REPL
    assert session.run("def f(n):\n    return n * x").ok
    assert session.run("f(3)").stdout == "60\n"


def test_errors_keep_the_session(session):
    session.run("kept = 'yes'")
    result = session.run("1 / 0")
    assert result.status is Status.RUNTIME_ERROR
    assert "ZeroDivisionError" in result.stderr and 'File "<cell>"' in result.stderr
    assert "_session_server" not in result.stderr  # only the agent's own frames
    assert session.run("kept").stdout == "'yes'\n"


def test_timeout_interrupts_but_keeps_state(session):
    session.run("kept = 7")
    result = session.run("import time\ntime.sleep(100)")
    assert result.status is Status.TIMEOUT and result.wall_time < 3
    busy = session.run("while True:\n    pass")
    assert busy.status is Status.TIMEOUT
    assert session.run("kept").stdout == "7\n"
    assert session.restarts == 0


def test_exit_of_the_interpreter_restarts_it(session):
    session.run("kept = 1")
    lost = session.run("import os\nos._exit(0)")
    assert lost.status is Status.RUNTIME_ERROR and "state was lost" in lost.stderr
    fresh = session.run("kept")
    assert "NameError" in fresh.stderr
    assert session.restarts == 1


def test_sys_exit_does_not_end_the_session(session):
    assert session.run("import sys\nsys.exit(0)").status is Status.OK
    assert session.run("import sys\nsys.exit(2)").status is Status.RUNTIME_ERROR
    assert session.run("1 + 1").stdout == "2\n"


def test_output_and_memory_limits_per_call(bwrap):
    limits = Limits(output=1000, memory=256 * MIB)
    with bwrap.open_session(limits) as s:
        big = s.run("print('y' * 5000)")
        assert big.status is Status.OUTPUT_LIMIT and big.stdout_truncated
        assert len(big.stdout) == 1000
        assert s.run("b = bytearray(2 * 1024**3)").status is Status.MEMORY_LIMIT
        assert s.run("print('ok')").stdout == "ok\n"


def test_hard_kill_when_the_interpreter_does_not_come_back(bwrap):
    # SIGALRM is blocked, so the in-sandbox interrupt cannot fire: the host kills it.
    with bwrap.open_session(Limits(wall_time=1, cpu_time=5)) as s:
        code = "import signal, time\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\ntime.sleep(30)"
        started = time.monotonic()
        result = s.run(code)
        assert result.status is Status.TIMEOUT and "state was lost" in result.stderr
        assert time.monotonic() - started < 5
        assert s.run("2 * 21").stdout == "42\n"
        assert s.restarts == 1


def test_sessions_are_isolated_from_each_other(bwrap):
    with bwrap.open_session() as a, bwrap.open_session() as b:
        a.run("secret = 'a'\nopen('/tmp/note', 'w').write('a')")
        assert "NameError" in b.run("secret").stderr
        assert "FileNotFoundError" in b.run("open('/tmp/note').read()").stderr


def test_closed_session_refuses_and_async_works(bwrap):
    s = Session(bwrap)
    assert asyncio.run(s.arun("3 * 3")).stdout == "9\n"
    s.close()
    assert not s.alive
    with pytest.raises(SandboxError, match="closed"):
        s.run("1")


def test_local_session_works_too(local):
    with local.open_session() as s:
        s.run("z = 5")
        assert s.run("z * 2").stdout == "10\n"


def test_pool_hands_out_started_sessions_and_refills(bwrap):
    with SessionPool(bwrap, size=2) as pool:
        deadline = time.monotonic() + 10
        while pool.ready < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pool.ready == 2
        first = pool.acquire()
        assert first.alive
        assert first.run("1 + 1").stdout == "2\n"
        second = pool.acquire()
        assert second is not first
        while pool.ready < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pool.ready == 2  # refilled in the background
        first.close()
        second.close()
    assert pool.ready == 0
    with pytest.raises(SandboxError, match="closed"):
        pool.acquire()


def test_pool_of_size_zero_starts_on_demand(bwrap):
    with SessionPool(bwrap, size=0) as pool:
        s = pool.acquire()
        assert s.run("'on demand'").stdout == "'on demand'\n"
        s.close()
