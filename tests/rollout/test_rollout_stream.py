"""RolloutStream: completion order, submitting while running, env pooling and reuse, the async
env path, early exit; and the 164 HumanEval tasks exactly once through the collector."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from typing import Any

import pytest

from agentrl.errors import ConfigError
from agentrl.policy import FakePolicy
from agentrl.rollout import (
    EpisodeSpec,
    RolloutConfig,
    RolloutStream,
    collect,
    collect_sync,
    specs_for,
)


class SleepEnv:
    """Task ``seed``: one turn; reset sleeps ``seed * unit`` seconds (a slow task). Counts
    its resets and records the thread each call ran on."""

    made: list[SleepEnv] = []

    def __init__(self, unit: float = 0.0, fail_seed: int | None = None) -> None:
        self.unit, self.fail_seed = unit, fail_seed
        self.resets = 0
        self.closes = 0
        self.threads: set[str] = set()
        SleepEnv.made.append(self)

    def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
        self.threads.add(threading.current_thread().name)
        if self.closes:
            raise RuntimeError("reset after close")
        self.resets += 1
        time.sleep((seed or 0) * self.unit)
        self.seed = seed
        return [{"role": "user", "content": f"Task {seed}"}], {"task_id": f"t{seed}"}

    def step(self, action: str) -> Any:
        self.threads.add(threading.current_thread().name)
        if self.seed == self.fail_seed:
            raise RuntimeError("the tool crashed")
        return [], 1.0, True, False, {"success": True}

    def close(self) -> None:
        self.closes += 1


@pytest.fixture(autouse=True)
def _clear() -> None:
    SleepEnv.made.clear()


def test_yields_in_completion_order_and_collect_keeps_plan_order(tiny_tokenizer: Any) -> None:
    policy = FakePolicy(tiny_tokenizer, ["ok"], cycle=True)

    async def main() -> list[int | None]:
        async with RolloutStream(lambda: SleepEnv(unit=0.08), policy) as stream:
            for seed in (3, 0, 2, 1):
                stream.submit(seed)
            stream.close_input()
            return [traj.seed async for traj in stream]

    # Reset sleeps seed * 80 ms: episodes finish in seed order, not submission order.
    assert asyncio.run(main()) == [0, 1, 2, 3]
    trajs = collect_sync(lambda: SleepEnv(unit=0.08), policy, [3, 0, 2, 1])
    assert [t.seed for t in trajs] == [3, 0, 2, 1]
    assert [t.metadata["episode"] for t in trajs] == [0, 1, 2, 3]


def test_submit_while_running_and_in_flight(tiny_tokenizer: Any) -> None:
    policy = FakePolicy(tiny_tokenizer, ["ok"], cycle=True, delay_s=0.01)

    async def main() -> tuple[list[int | None], list[int], list[str]]:
        seen, in_flight, groups = [], [], []
        async with RolloutStream(SleepEnv, policy, RolloutConfig(concurrency=2)) as stream:
            assert stream.submit(EpisodeSpec(seed=0), count=2) == [0, 1]
            assert stream.in_flight == 2
            async for traj in stream:
                seen.append(traj.seed)
                groups.append(traj.group_id)
                in_flight.append(stream.in_flight)
                if traj.seed is not None and traj.seed < 3 and len(seen) % 2 == 0:
                    stream.submit(traj.seed + 1, count=2)  # keep a group in flight
                if len(seen) == 8:
                    stream.close_input()
            with pytest.raises(ConfigError, match="input is closed"):
                stream.submit(9)
        return seen, in_flight, groups

    seen, in_flight, groups = asyncio.run(main())
    assert sorted(seen) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert in_flight[-1] == 0 and max(in_flight) <= 2
    # The two copies of each submission share a fresh group id; submissions differ.
    by_group = Counter(groups)
    assert len(by_group) == 4 and set(by_group.values()) == {2}


def test_envs_are_pooled_reused_and_closed(tiny_tokenizer: Any) -> None:
    policy = FakePolicy(tiny_tokenizer, ["ok"], cycle=True, delay_s=0.002)
    trajs = collect_sync(SleepEnv, policy, range(30), RolloutConfig(concurrency=3))
    assert all(t.success for t in trajs)
    # 30 episodes, at most 3 at once: at most 3 instances, each reset many times, each
    # closed exactly once at the end.
    assert 1 <= len(SleepEnv.made) <= 3
    assert sum(e.resets for e in SleepEnv.made) == 30
    assert all(e.closes == 1 for e in SleepEnv.made)
    # Sync envs ran in the collector's thread pool.
    assert all(name.startswith("agentrl-env") for e in SleepEnv.made for name in e.threads)


def test_an_env_that_raised_is_discarded_not_reused(tiny_tokenizer: Any) -> None:
    policy = FakePolicy(tiny_tokenizer, ["ok"], cycle=True)
    trajs = collect_sync(lambda: SleepEnv(fail_seed=1), policy, [0, 1, 2, 3, 4, 5],
                         RolloutConfig(concurrency=1))
    assert [t.end_reason for t in trajs] == ["terminated", "error"] + ["terminated"] * 4
    assert trajs[1].error == "env.step (turn 1) raised RuntimeError: the tool crashed"
    # One at a time: env A runs seeds 0 and 1, raises and is closed; env B runs the rest.
    a, b = SleepEnv.made
    assert (a.resets, a.closes) == (2, 1) and (b.resets, b.closes) == (4, 1)


class AsyncOnlyEnv:
    """An AsyncEnv: awaited on the event loop. Its sync methods must never be called."""

    instances: list[AsyncOnlyEnv] = []

    def __init__(self) -> None:
        self.log: list[str] = []
        AsyncOnlyEnv.instances.append(self)

    async def areset(self, *, seed: int | None = None, options: Any = None) -> Any:
        self.log.append(f"areset {seed} {threading.current_thread() is threading.main_thread()}")
        self.seed = seed
        await asyncio.sleep(0.01)
        return [{"role": "user", "content": f"Say {seed}"}], {"task_id": f"say-{seed}"}

    async def astep(self, action: str) -> Any:
        self.log.append(f"astep {action}")
        ok = action == str(self.seed)
        return [], float(ok), True, False, {"success": ok}

    async def aclose(self) -> None:
        self.log.append("aclose")

    def reset(self, **kwargs: Any) -> Any:
        raise AssertionError("the sync reset of an AsyncEnv was called")

    def step(self, action: str) -> Any:
        raise AssertionError("the sync step of an AsyncEnv was called")

    def close(self) -> None:
        raise AssertionError("the sync close of an AsyncEnv was called")


def test_async_envs_are_awaited_on_the_loop(tiny_tokenizer: Any) -> None:
    from agentrl.env import AsyncEnv

    AsyncOnlyEnv.instances.clear()
    assert isinstance(AsyncOnlyEnv(), AsyncEnv)
    AsyncOnlyEnv.instances.clear()
    policy = FakePolicy(tiny_tokenizer, lambda prompt: re.findall(r"Say (\d+)", prompt)[-1])
    trajs = collect_sync(AsyncOnlyEnv, policy, [7, 8], RolloutConfig(concurrency=1))
    assert [t.total_reward for t in trajs] == [1.0, 1.0], [t.error for t in trajs]
    assert [t.task_id for t in trajs] == ["say-7", "say-8"]
    (env,) = AsyncOnlyEnv.instances  # one instance, reused
    # Awaited in the main thread (the event loop), closed with aclose once.
    assert env.log == ["areset 7 True", "astep 7", "areset 8 True", "astep 8", "aclose"]


def test_leaving_early_cancels_and_closes(tiny_tokenizer: Any) -> None:
    policy = FakePolicy(tiny_tokenizer, ["ok"], cycle=True)

    async def main() -> int:
        async with RolloutStream(lambda: SleepEnv(unit=0.05), policy) as stream:
            stream.submit(EpisodeSpec(seed=0))
            for seed in range(1, 6):
                stream.submit(seed)
            first = await stream.__anext__()
        return first.seed

    assert asyncio.run(main()) == 0
    assert all(e.closes == 1 for e in SleepEnv.made) and len(SleepEnv.made) == 6


def test_stream_misuse_is_a_clear_error(tiny_tokenizer: Any) -> None:
    policy = FakePolicy(tiny_tokenizer, ["ok"])
    stream = RolloutStream(SleepEnv, policy)
    with pytest.raises(ConfigError, match="not started"):
        stream.submit(0)
    with pytest.raises(ConfigError, match="registered env id or a zero-argument factory"):
        RolloutStream(42, policy)  # type: ignore[arg-type]

    async def bad_count() -> None:
        async with RolloutStream(SleepEnv, policy) as started:
            started.submit(0, count=0)

    with pytest.raises(ConfigError, match="count must be an int >= 1"):
        asyncio.run(bad_count())


def test_humaneval_all_164_tasks_exactly_once(tiny_tokenizer: Any) -> None:
    # A real run through the collector: each episode resets HumanEval with its task id,
    # the policy calls a tool that does not exist, the env answers with an error message
    # (no sandbox needed), and max_turns=1 ends the episode.
    reply = '<tool_call>\n{"name": "no_such_tool", "arguments": {}}\n</tool_call>'
    policy = FakePolicy(tiny_tokenizer, [reply], cycle=True)
    specs = specs_for("agentrl/HumanEval-v0")
    assert len(specs) == 164
    seen: list[str] = []
    trajs = asyncio.run(collect("agentrl/HumanEval-v0", policy, specs,
                                RolloutConfig(max_turns=1, concurrency=8),
                                progress=lambda t: seen.append(t.task_id)))
    counts = Counter(t.task_id for t in trajs)
    assert len(counts) == 164 and set(counts.values()) == {1}
    assert set(counts) == {f"HumanEval/{i}" for i in range(164)} and len(seen) == 164
    for traj in trajs:
        assert traj.end_reason == "max_turns", traj.error
        assert traj.options == {"task_id": traj.task_id}
        assert traj.reset_info["task_id"] == traj.task_id
        assert "unknown tool" in traj.messages[-1]["content"]
    # The prompt is the task's own: HumanEval/0 is has_close_elements.
    first = next(t for t in trajs if t.task_id == "HumanEval/0")
    assert "has_close_elements" in first.messages[1]["content"]
