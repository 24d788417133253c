"""HumanEval as a finite task set: its 164 ids, selected one by one through reset options."""

from __future__ import annotations

import pytest

from agentrl.errors import ConfigError, TaskNotFoundError
from agentrl.registry import make


@pytest.fixture(scope="module")
def env():
    env = make("agentrl/HumanEval-v0", pool_size=0).unwrapped  # no session is started here
    yield env
    env.close()


def test_task_ids_are_the_164_problems_in_order(env):
    ids = env.task_ids()
    assert len(ids) == 164 and len(set(ids)) == 164
    assert ids[0] == "HumanEval/0" and ids[163] == "HumanEval/163"
    assert ids == [f"HumanEval/{i}" for i in range(164)]
    ids.append("mine")  # a copy: the env's list is not changed
    assert len(env.task_ids()) == 164


def test_every_task_id_selects_its_problem(env):
    for i, tid in enumerate(env.task_ids()):
        messages, info = env.reset(options={"task_id": tid})
        assert info["task_id"] == tid and env.task.metadata["index"] == i
        assert env.problems[i]["entry_point"] in messages[-1]["content"]


def test_unknown_task_id_and_bad_index(env):
    with pytest.raises(TaskNotFoundError, match="'HumanEval/0' .. 'HumanEval/163'"):
        env.reset(options={"task_id": "HumanEval/164"})
    with pytest.raises(TaskNotFoundError):
        env.reset(options={"task_id": ["HumanEval/1"]})  # unhashable: still a clear error
    with pytest.raises(ConfigError, match="index"):
        env.reset(options={"index": "3"})
