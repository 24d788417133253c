"""Grading on the docker backend: the reward-hacking cases, HumanEval on a subset, and
hostile frames on the docker transport.

Every test of ``test_sandbox_grading.py`` that takes the ``grader`` fixture is collected
here a second time, with a grader whose two processes are containers (``spawn`` runs
``docker run -i``); new hacking cases added there run on docker without an edit here.
"""

from __future__ import annotations

import inspect

import pytest

from agentrl.checker import run_oracle_episode
from agentrl.envs.humaneval import HumanEvalEnv, load_problems
from agentrl.sandbox import Limits, Status
from agentrl.sandbox.grading import FunctionGrader, GradeTask

from . import test_sandbox_grading as _bwrap_cases
from .conftest import docker_backend_or_skip
from .test_sandbox_channel import CHECK, REPRODUCER, hostile_writer
from .test_sandbox_humaneval import BROKEN

pytestmark = pytest.mark.docker

# The hacking cases, collected in this module so that they take this module's ``grader``.
for _name, _case in vars(_bwrap_cases).items():
    if _name.startswith("test_") and "grader" in inspect.signature(_case).parameters:
        globals()[_name] = _case


@pytest.fixture(scope="module")
def grader():
    # Pooled: the two processes are exec'd into started containers (docker exec -i).
    return FunctionGrader(docker_backend_or_skip(pooled=True), Limits(wall_time=5))


# A spread over the benchmark (every 32nd problem) plus HumanEval/162, whose solution
# needs hashlib's OpenSSL library in the image. (All 164 run on bwrap.)
SUBSET = [*range(0, 164, 32), 162]


def test_humaneval_subset_canonical_pass_and_broken_fail():
    # Calls cross docker's attach streams (~5-30 ms a round trip; HumanEval/32 makes 100
    # calls), so the grading gets more wall time than the hacking cases' 5 s.
    grader = FunctionGrader(docker_backend_or_skip(pooled=True), Limits(wall_time=30))
    problems = [load_problems()[i] for i in SUBSET]

    def task(p: dict, program: str) -> GradeTask:
        return GradeTask(program=program, entry_point=p["entry_point"], test=p["test"],
                         context=p["prompt"])

    good = grader.grade_many([task(p, p["prompt"] + p["canonical_solution"]) for p in problems],
                             workers=4)
    bad = grader.grade_many(
        [task(p, p["prompt"] + p["canonical_solution"] + BROKEN.replace("{name}", p["entry_point"]))
         for p in problems], workers=4)
    failed = [(p["task_id"], r.error) for p, r in zip(problems, good, strict=True) if not r.passed]
    assert failed == []
    assert all(r.asserts_passed == r.asserts_total > 0 for r in good)
    assert [p["task_id"] for p, r in zip(problems, bad, strict=True) if r.reward != 0.0] == []
    assert all(r.error.startswith("AssertionError") for r in bad)


def test_issue_reproducers_on_docker_are_statuses_not_exceptions():
    # Fault 1 of issue 9 on the docker transport (docker run -i, no pool): hostile frames
    # from the solution (a deeply nested one, a huge length header) fail the grade.
    grader = FunctionGrader(docker_backend_or_skip(), Limits(wall_time=10))
    for program in (REPRODUCER, hostile_writer("b'\\xff\\xff\\xff\\xff' + b'x' * 100")):
        result = grader.grade(program, entry_point="f", test=CHECK)
        assert result.passed is False and result.reward == 0.0


def test_hostile_frames_in_a_docker_session_are_a_status():
    backend = docker_backend_or_skip()
    with backend.open_session(Limits(wall_time=5)) as session:
        code = ("import os\ndata = b'\\x00\\x00\\x00\\x05[[[[['\nfor fd in range(3, 12):\n"
                "    try: os.write(fd, data)\n    except OSError: pass\n")
        result = session.run(code)
        assert isinstance(result.status, Status) and result.status is not Status.SANDBOX_ERROR
        assert session.run("print(1)").stdout == "1\n"  # the session recovers


def test_humaneval_env_on_docker():
    # The env end to end on containers: a python-tool call in a session, then the graded
    # answer (the oracle), and a wrong answer that earns nothing.
    env = HumanEvalEnv(backend=docker_backend_or_skip())
    try:
        assert run_oracle_episode(env, 0) == (1.0, True, 2)
        env.reset(options={"task_id": "HumanEval/0"})
        _, reward, terminated, _, _ = env.step(
            "<answer>\n```python\ndef has_close_elements(numbers, threshold):\n"
            "    return True\n```\n</answer>")
        assert (reward, terminated) == (0.0, True)
    finally:
        env.close()
