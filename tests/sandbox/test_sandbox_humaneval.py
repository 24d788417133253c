"""HumanEval on bwrap: all 164 canonical solutions earn full reward, a broken variant of each
earns none (the Done-when of issue 3), plus the environment around it."""

from __future__ import annotations

import time

import pytest

from agentrl.checker import check_agent_env, run_oracle_episode
from agentrl.envs.humaneval import HumanEvalEnv, extract_code, load_problems
from agentrl.registry import register_env
from agentrl.sandbox.grading import FunctionGrader, GradeTask

# Same id and entry point as envs/__init__.py registers (re-registering is a no-op).
register_env("agentrl/HumanEval-v0", "agentrl.envs.humaneval:HumanEvalEnv",
             description="HumanEval: write a Python function; hidden tests run in a fresh sandbox.")

# Wraps the canonical solution so that every answer is changed (a plausible wrong program).
BROKEN = '''
def _agentrl_perturb(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "#"
    if isinstance(value, list):
        return value + [None]
    if isinstance(value, tuple):
        return value + (None,)
    return 0 if value is None else None

_agentrl_original = {name}

def {name}(*args, **kwargs):
    return _agentrl_perturb(_agentrl_original(*args, **kwargs))
'''


def test_data_has_164_problems():
    problems = load_problems()
    assert len(problems) == 164
    assert problems[0]["task_id"] == "HumanEval/0" and problems[163]["task_id"] == "HumanEval/163"
    assert all({"prompt", "entry_point", "canonical_solution", "test"} <= set(p) for p in problems)


@pytest.mark.slow
def test_all_canonical_solutions_pass_and_broken_variants_fail(bwrap):
    problems = load_problems()
    grader = FunctionGrader(bwrap)

    def task(p: dict, program: str) -> GradeTask:
        return GradeTask(program=program, entry_point=p["entry_point"], test=p["test"],
                         context=p["prompt"])

    started = time.monotonic()
    good = grader.grade_many([task(p, p["prompt"] + p["canonical_solution"]) for p in problems],
                             workers=4)
    bad = grader.grade_many(
        [task(p, p["prompt"] + p["canonical_solution"] + BROKEN.replace("{name}", p["entry_point"]))
         for p in problems], workers=4)
    failed = [(p["task_id"], r.error) for p, r in zip(problems, good, strict=True) if not r.passed]
    assert failed == []
    assert all(r.asserts_passed == r.asserts_total > 0 for r in good)
    cheated = [p["task_id"] for p, r in zip(problems, bad, strict=True) if r.reward != 0.0]
    assert cheated == []
    # The broken variants fail on an assert (a wrong answer), not by failing to load.
    assert all(r.error.startswith("AssertionError") for r in bad)
    assert time.monotonic() - started < 180


def test_extract_code():
    assert extract_code("text\n```python\ndef f():\n    return 1\n```\nmore") == \
        "def f():\n    return 1\n"
    assert extract_code("```\na = 1\n```\n```py\nb = 2\n```") == "b = 2\n"
    assert extract_code("def g(): pass") == "def g(): pass"


@pytest.fixture
def env(bwrap):
    e = HumanEvalEnv(backend=bwrap)
    yield e
    e.close()


def test_oracle_episode_and_hidden_tests(env):
    for seed in range(3):
        assert run_oracle_episode(env, seed) == (1.0, True, 2)
    env.reset(options={"task_id": "HumanEval/0"})
    assert "has_close_elements" in env.messages[1]["content"]
    assert "check(" not in "".join(m["content"] for m in env.messages)  # tests stay hidden
    _, reward, terminated, _, info = env.step("<answer>\n```python\ndef has_close_elements(numbers, threshold):\n    return True\n```\n</answer>")
    assert (reward, terminated, info["success"]) == (0.0, True, False)
    assert info["tests"]["asserts_passed"] < info["tests"]["asserts_total"]


def test_reward_hacks_through_the_env_earn_nothing(env):
    hacks = [
        "import sys\nsys.exit(0)",
        "import os\nos._exit(0)",
        "print('All tests passed')\ndef has_close_elements(numbers, threshold):\n    return None",
        ("class A:\n    def __eq__(self, o):\n        return True\n"
         "def has_close_elements(numbers, threshold):\n    return A()"),
        ("open('conftest.py', 'w').write('')\nopen('sitecustomize.py', 'w').write('')\n"
         "def has_close_elements(numbers, threshold):\n    return False"),
    ]
    for code in hacks:
        env.reset(options={"task_id": "HumanEval/0"})
        # The agent first plants files in its own session, then submits.
        env.step('<tool_call>\n{"name": "python", "arguments": {"code": '
                 '"open(\'sitecustomize.py\', \'w\').write(\'import os\')"}}\n</tool_call>')
        _, reward, terminated, _, _ = env.step(f"<answer>\n```python\n{code}\n```\n</answer>")
        assert terminated and reward == 0.0, code


def test_session_is_closed_at_episode_end_and_on_close(bwrap):
    env = HumanEvalEnv(backend=bwrap)
    env.reset(seed=1)
    env.step(env.oracle_action())
    session = env.python.session
    assert session.alive
    env.step(env.oracle_action())  # submits: the episode ends
    assert env.python is None and not session.alive
    env.reset(seed=2)
    env.step(env.oracle_action())
    second = env.python.session
    env.close()
    assert not second.alive and env.pool.ready == 0


def test_bad_options_are_config_errors(env):
    from agentrl.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown HumanEval task_id"):
        env.reset(options={"task_id": "HumanEval/999"})
    with pytest.raises(ConfigError, match="index"):
        env.reset(options={"index": 500})


def test_env_passes_the_agentrl_checker():
    report = check_agent_env("agentrl/HumanEval-v0", episodes=2)
    assert report.passed, report.render()
