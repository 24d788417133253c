"""Rollout workers as Ray actors (local Ray, 2 CPUs): the same trajectories as a local
collection, weight sync to every worker, and a worker killed mid-batch whose in-flight
episodes are re-run elsewhere or recorded as failed, never dropped."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'agentrl[ray]')")

from agentrl.policy import FakePolicy  # noqa: E402
from agentrl.rollout import RolloutConfig, collect_sync  # noqa: E402
from agentrl.serve.ray_rollout import (  # noqa: E402
    RayRolloutConfig,
    RayRolloutStream,
    RayWorkerPool,
    ray_collect,
)

from .conftest import CALC  # noqa: E402

# The workers cannot import this test module: its functions travel by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _replies(prompt: str) -> str:
    if "<tool_response>" not in prompt:
        return '<tool_call>{"name": "calculator", "arguments": {"expression": "6*7"}}</tool_call>'
    return "<answer>42</answer>"


def _fake_policy(tokenizer_path: str, delay_s: float = 0.0) -> FakePolicy:
    from transformers import AutoTokenizer

    return FakePolicy(AutoTokenizer.from_pretrained(tokenizer_path), _replies, delay_s=delay_s)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


CONFIG = RolloutConfig(max_turns=4, max_new_tokens=64, concurrency=8, group_size=2)


def test_workers_collect_like_local_and_take_weights(local_ray: None, tiny_model_path: Path,
                                                     tiny_tokenizer) -> None:
    factory = functools.partial(_fake_policy, str(tiny_model_path))
    with RayWorkerPool(CALC, factory, RayRolloutConfig(workers=2, num_cpus=1)) as pool:
        remote = asyncio.run(ray_collect(pool, range(6), CONFIG))
        local = collect_sync(CALC, factory(), range(6), CONFIG)
        assert len(remote) == 12
        for a, b in zip(local, remote, strict=True):
            assert a.token_ids == b.token_ids and a.group_id[-2:] == b.group_id[-2:]
            assert [t.reward for t in a.turns] == [t.reward for t in b.turns]
            assert (a.end_reason, a.success, a.task_id) == (b.end_reason, b.success, b.task_id)
        assert all(t.end_reason == "terminated" and len(t.turns) == 2 for t in remote)
        pids = {t.metadata["worker_pid"] for t in remote}
        assert len(pids) == 2 and os.getpid() not in pids  # both workers, other processes
        assert pool.update_weights({"w": [1.0]}) == 0.0  # FakePolicy: nothing to differ
        assert pool.weight_versions() == [1, 1]
        turns = asyncio.run(ray_collect(pool, range(2), CONFIG))
        assert {t.turns[0].weight_version for t in turns} == {1}


@pytest.mark.parametrize("retries", [1, 0])
def test_worker_killed_mid_batch(local_ray: None, tiny_model_path: Path, retries: int) -> None:
    factory = functools.partial(_fake_policy, str(tiny_model_path), 0.5)
    config = RayRolloutConfig(workers=2, num_cpus=1, episode_retries=retries, respawn=bool(retries))
    with RayWorkerPool(CALC, factory, config, concurrency=4) as pool:
        if retries:
            pool.update_weights({"w": [2.0]})

        async def run() -> tuple[list, RayRolloutStream]:
            async with RayRolloutStream(pool, CONFIG) as stream:
                stream.submit(0, count=8)  # 4 in flight on each worker
                stream.close_input()
                await asyncio.sleep(0.3)  # mid-episode: generating the first turn
                victim = pool.workers[0]
                ray.kill(victim.actor, no_restart=True)
                return [t async for t in stream], stream

        trajs, stream = asyncio.run(run())
        assert len(trajs) == 8  # every episode accounted for
        assert sorted(t.metadata["episode"] for t in trajs) == list(range(8))
        assert pool.deaths == 1
        failed = [t for t in trajs if t.end_reason == "error"]
        if retries:
            assert not failed and stream.reruns == 4  # re-run on the surviving worker
            assert all(t.end_reason == "terminated" for t in trajs)
            assert len(pool.workers) == 2  # replaced, at the current weights
            assert pool.weight_versions() == [1, 1]
        else:
            assert len(failed) == 4 and stream.reruns == 0
            assert all("died during the episode" in t.error for t in failed)
            assert all(t.end_reason == "terminated" for t in trajs if t not in failed)
