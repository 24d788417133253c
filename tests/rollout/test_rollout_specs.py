"""Episode specs through the collector: reset options, reset info and task ids kept in the
trajectory, group ids, per-turn weight versions, and specs_for."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from agentrl.errors import ConfigError
from agentrl.policy import FakePolicy
from agentrl.rollout import EpisodeSpec, RolloutConfig, collect_sync, specs_for
from agentrl.trajectory import load_jsonl, save_jsonl

TASKS = {"add-1": "What is 1 + 1?", "add-2": "What is 2 + 2?", "mul-3": "What is 3 * 3?"}
ANSWERS = {"add-1": "2", "add-2": "4", "mul-3": "9"}


class TaskEnv:
    """A finite-task env: ``reset(options={"task_id": ...})`` picks the task; without one,
    the seed does. Two turns: any first message gets "try again", the second is graded."""

    resets: list[tuple[int | None, Any]] = []

    def __init__(self, policy: FakePolicy | None = None) -> None:
        self.policy = policy  # when set, each step pushes new weights (a trainer would)

    def task_ids(self) -> list[str]:
        return list(TASKS)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        TaskEnv.resets.append((seed, options))
        task = (options or {}).get("task_id") or list(TASKS)[(seed or 0) % len(TASKS)]
        self.task, self.turn = task, 0
        info = {"task_id": task, "category": task.split("-")[0], "handle": object(),
                "success": None}
        return [{"role": "user", "content": f"[{task}] {TASKS[task]}"}], info

    def step(self, action: str) -> Any:
        self.turn += 1
        if self.policy is not None:
            self.policy.update_weights({"step": self.turn})
        if self.turn == 1:
            return [{"role": "user", "content": "try again"}], 0.0, False, False, {}
        ok = action.strip() == ANSWERS[self.task]
        return [], float(ok), True, False, {"success": ok}

    def close(self) -> None:
        pass


def oracle(prompt: str) -> str:
    task = re.findall(r"\[([a-z]+-\d)\]", prompt)[-1]
    return ANSWERS[task]


@pytest.fixture(autouse=True)
def _clear_resets() -> None:
    TaskEnv.resets.clear()


def test_spec_options_reach_reset_and_info_lands_in_the_trajectory(tiny_tokenizer: Any) -> None:
    policy = FakePolicy(tiny_tokenizer, oracle)
    specs = [
        EpisodeSpec(seed=5, task_id="mul-3"),
        EpisodeSpec(seed=6, options={"task_id": "add-2", "level": 3, "obj": object()}),
        EpisodeSpec(seed=1),  # no task: the env picks by seed and reports it in its info
        4,
        None,
    ]
    trajs = collect_sync(TaskEnv, policy, specs, RolloutConfig(max_turns=3))
    assert sorted(TaskEnv.resets, key=repr) == sorted([
        (5, {"task_id": "mul-3"}),
        (6, {"task_id": "add-2", "level": 3, "obj": specs[1].options["obj"]}),
        (1, None), (4, None), (None, None)], key=repr)
    assert [t.task_id for t in trajs] == ["mul-3", "add-2", "add-2", "add-2", "add-1"]
    assert [t.seed for t in trajs] == [5, 6, 1, 4, None]
    assert trajs[0].options == {"task_id": "mul-3"}
    assert trajs[1].options == {"task_id": "add-2", "level": 3}  # object() dropped
    assert trajs[2].options == {}
    # The JSON-safe part of the reset info is kept.
    assert trajs[0].reset_info == {"task_id": "mul-3", "category": "mul", "success": None}
    assert all(t.success and t.total_reward == 1.0 for t in trajs), [t.error for t in trajs]


def test_group_ids_from_specs_and_fresh_ones(tiny_tokenizer: Any) -> None:
    policy = FakePolicy(tiny_tokenizer, oracle)
    specs = [EpisodeSpec(task_id="add-1", group_id="g-add"), EpisodeSpec(task_id="add-2"),
             EpisodeSpec(task_id="add-2")]
    trajs = collect_sync(TaskEnv, policy, specs, RolloutConfig(group_size=2))
    ids = [t.group_id for t in trajs]
    assert ids[:2] == ["g-add", "g-add"]
    # Specs without a group id get one each, shared by their group_size copies only.
    assert ids[2] == ids[3] and ids[4] == ids[5] and len({ids[0], ids[2], ids[4]}) == 3


def test_each_turn_records_the_weight_version_that_generated_it(tiny_tokenizer: Any,
                                                                tmp_path: Path) -> None:
    policy = FakePolicy(tiny_tokenizer, oracle)
    (traj,) = collect_sync(lambda: TaskEnv(policy), policy, [EpisodeSpec(task_id="add-1")])
    # Turn 1 sampled with version 0; the env step then pushed weights (version 1) before
    # turn 2 was sampled; the second step pushed version 2.
    assert traj.weight_versions == [0, 1] and policy.weight_version == 2
    save_jsonl([traj], tmp_path / "t.jsonl")
    assert load_jsonl(tmp_path / "t.jsonl")[0].weight_versions == [0, 1]


def test_jsonl_roundtrip_keeps_the_new_fields(tiny_tokenizer: Any, tmp_path: Path) -> None:
    policy = FakePolicy(tiny_tokenizer, oracle)
    trajs = collect_sync(TaskEnv, policy, specs_for(TaskEnv(), samples=2))
    save_jsonl(trajs, tmp_path / "t.jsonl")
    assert load_jsonl(tmp_path / "t.jsonl") == trajs
    assert trajs[0].reset_info["category"] == "add"


def test_specs_for_finite_and_seeded_envs() -> None:
    specs = specs_for(TaskEnv(), samples=2, seed=10)
    assert [(s.task_id, s.seed, s.group_id) for s in specs] == [
        ("add-1", 10, "task-add-1"), ("add-1", 10, "task-add-1"),
        ("add-2", 11, "task-add-2"), ("add-2", 11, "task-add-2"),
        ("mul-3", 12, "task-mul-3"), ("mul-3", 12, "task-mul-3")]
    assert [s.task_id for s in specs_for(TaskEnv(), episodes=2)] == ["add-1", "add-2"]

    class Endless:
        def task_ids(self) -> None:
            return None

    seeded = specs_for(Endless(), episodes=3, samples=2, seed=7)
    assert [(s.seed, s.task_id, s.group_id) for s in seeded] == [
        (7, None, "seed-7"), (7, None, "seed-7"), (8, None, "seed-8"), (8, None, "seed-8"),
        (9, None, "seed-9"), (9, None, "seed-9")]
    assert specs_for(object(), episodes=1) == [EpisodeSpec(seed=0, group_id="seed-0")]
    with pytest.raises(ConfigError, match="Endless has no finite task list.*episodes=N"):
        specs_for(Endless())
    with pytest.raises(ConfigError, match="samples must be >= 1"):
        specs_for(TaskEnv(), samples=0)
    # A registered env id is made once to ask (Calculator generates its tasks).
    assert len(specs_for("agentrl/Calculator-v0", episodes=4)) == 4


def test_bad_specs_are_clear_errors(tiny_tokenizer: Any) -> None:
    with pytest.raises(ConfigError, match="seed must be an int or None"):
        EpisodeSpec(seed="3")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="options must be a mapping"):
        EpisodeSpec(options=[("a", 1)])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="differs from options"):
        EpisodeSpec(task_id="a", options={"task_id": "b"})
    policy = FakePolicy(tiny_tokenizer, oracle)
    with pytest.raises(ConfigError, match="an episode is an EpisodeSpec, an int seed or None"):
        collect_sync(TaskEnv, policy, [1, "add-1"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="specs must be a sequence"):
        collect_sync(TaskEnv, policy, EpisodeSpec())  # type: ignore[arg-type]
