"""The python/shell tools and agentrl/PythonInterpreter-v0, on the real bwrap backend."""

from __future__ import annotations

import numpy as np
import pytest

from agentrl.checker import check_agent_env, run_oracle_episode
from agentrl.envs.python_interpreter import FAMILIES, PythonInterpreterEnv, make_task
from agentrl.errors import ConfigError
from agentrl.registry import register_env
from agentrl.sandbox import ExecResult, Limits, Status
from agentrl.tools.python import PythonSession, format_result, python
from agentrl.tools.shell import make_shell_tool, shell

# Same id and entry point as envs/__init__.py registers (re-registering is a no-op).
register_env("agentrl/PythonInterpreter-v0",
             "agentrl.envs.python_interpreter:PythonInterpreterEnv",
             description="Math/data questions solved with a persistent sandboxed Python session.")


def result(status: Status, stdout: str = "", stderr: str = "", code: int | None = 0) -> ExecResult:
    return ExecResult(status=status, stdout=stdout, stderr=stderr, exit_code=code,
                      wall_time=0.0, cpu_time=0.0)


def test_format_result():
    assert format_result(result(Status.OK, "4\n")) == "4"
    assert format_result(result(Status.OK)) == "(no output)"
    assert format_result(result(Status.RUNTIME_ERROR, "a\n", "Boom\n", 1)) == "a\nBoom"
    assert format_result(result(Status.RUNTIME_ERROR, code=3)) == "[exit code 3]"
    assert format_result(result(Status.TIMEOUT, code=None)).endswith("time limit exceeded]")
    assert "memory limit" in format_result(result(Status.MEMORY_LIMIT, code=1))


def test_python_tool_runs_in_a_fresh_sandbox():
    assert python.schema["function"]["name"] == "python"
    assert python.run({"code": "print(sum(range(10)))"}).content == "45"  # 0+1+...+9
    assert python.run({"code": "print(globals().get('x'))"}).content == "None"
    crashed = python.run({"code": "1/0"})
    assert crashed.ok and "ZeroDivisionError" in crashed.content  # an observation
    assert python.run({"cod": "x"}).error_kind == "bad_arguments"


def test_python_session_tool_keeps_state_and_closes(bwrap):
    with PythonSession(bwrap, Limits(wall_time=1)) as session:
        tool = session.tool
        assert tool.name == "python" and "persistent" in tool.description
        assert tool.run({"code": "x = 6"}).content == "(no output)"
        assert tool.run({"code": "x * 7"}).content == "42"
        slow = tool.run({"code": "import time\ntime.sleep(5)"})
        assert "time limit exceeded" in slow.content
        inner = session.session
    assert not inner.alive


def test_shell_tools(bwrap):
    out = shell.run({"command": "echo hello | tr a-z A-Z; id -u"}).content.splitlines()
    assert out[0] == "HELLO" and out[1] != "0"
    custom = make_shell_tool(bwrap, Limits(wall_time=1), name="sh")
    assert custom.name == "sh" and custom.description == shell.description
    assert "time limit exceeded" in custom.run({"command": "sleep 10"}).content


@pytest.mark.parametrize("family", list(FAMILIES))
def test_oracle_code_computes_the_answer_in_the_sandbox(bwrap, family):
    env = PythonInterpreterEnv(backend=bwrap, family=family, pool_size=0)
    try:
        for seed in range(3):
            env.reset(seed=seed)
            messages, reward, terminated, _, _ = env.step(env.oracle_action())
            # The solution run in the sandbox prints the answer the host computed.
            assert messages[0]["content"] == str(env.task.answer)
            assert (reward, terminated) == (0.0, False)
            assert run_oracle_episode(env, seed) == (1.0, True, 2)
    finally:
        env.close()


def test_data_is_preloaded_and_tasks_are_seeded(bwrap):
    env = PythonInterpreterEnv(backend=bwrap, family="mean_score")
    try:
        env.reset(seed=5)
        first = env.task
        call = '<tool_call>\n{"name": "python", "arguments": {"code": "len(data)"}}\n</tool_call>'
        messages, *_ = env.step(call)
        assert int(messages[0]["content"]) == int(first.prompt.split("list of ")[1].split()[0])
        env.reset(seed=5)
        assert env.task == first
        _, reward, terminated, _, info = env.step(f"<answer>{first.answer + 1}</answer>")
        assert (reward, terminated, info["success"]) == (0.0, True, False)
    finally:
        env.close()


def test_make_task_answers_by_hand():
    # prime_sum with the family's own sieve vs a direct check on a small known case:
    # primes below 30 are 2 3 5 7 11 13 17 19 23 29, which sum to 129.
    task = make_task(np.random.default_rng(0), "prime_sum")
    limit = int(task.prompt.split("below ")[1].split("?")[0])
    primes = [k for k in range(2, limit) if all(k % d for d in range(2, int(k ** 0.5) + 1))]
    assert task.answer == sum(primes)
    assert sum(k for k in range(2, 30) if all(k % d for d in range(2, int(k ** 0.5) + 1))) == 129
    with pytest.raises(ConfigError, match="unknown task family"):
        make_task(np.random.default_rng(0), "nope")


def test_grading_tolerance():
    env = PythonInterpreterEnv(pool_size=0)
    from agentrl.env import Task

    floaty = Task(prompt="", answer=12.35)
    assert env.grade(floaty, "12.35") == 1.0 and env.grade(floaty, "12.354") == 1.0
    assert env.grade(floaty, "12.4") == 0.0 and env.grade(floaty, "none") == 0.0
    exact = Task(prompt="", answer=1000)
    assert env.grade(exact, "1,000") == 1.0 and env.grade(exact, "1001") == 0.0
    env.close()


def test_sessions_closed_at_episode_end_and_close(bwrap):
    env = PythonInterpreterEnv(backend=bwrap, family="fib_mod")
    env.reset(seed=0)
    env.step(env.oracle_action())
    session = env.python.session
    env.reset(seed=1)  # a new episode replaces (and closes) the old session
    assert not session.alive
    env.step(env.oracle_action())
    second = env.python.session
    env.step(env.oracle_action())
    assert env.python is None and not second.alive
    env.reset(seed=2)
    env.step(env.oracle_action())
    third = env.python.session
    env.close()
    assert not third.alive and env.pool.ready == 0


def test_env_passes_the_agentrl_checker():
    report = check_agent_env("agentrl/PythonInterpreter-v0", episodes=3)
    assert report.passed, report.render()
