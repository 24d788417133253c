"""Rollout workers as Ray actors (local Ray, 2 CPUs): the same trajectories as a local
collection, weight sync to every worker, and a worker killed mid-batch whose in-flight
episodes are re-run elsewhere or recorded as failed, never dropped."""

from __future__ import annotations

import asyncio
import dataclasses
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
    # The machine is shared: Ray's own OOM killer must not pick our workers for others' use.
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=200 * 1024 * 1024)
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
        assert pool.weight_version == 1
        turns = asyncio.run(pool.collect(range(2), CONFIG))  # the trainer's call
        assert {t.turns[0].weight_version for t in turns} == {1}


async def _kill_mid_batch(pool: RayWorkerPool) -> tuple[list, RayRolloutStream]:
    async with RayRolloutStream(pool, CONFIG) as stream:
        stream.submit(0, count=8)  # 4 in flight on each worker
        stream.close_input()
        await asyncio.sleep(1.0)  # mid-episode: every episode is generating its first turn
        ray.kill(pool.workers[0].actor, no_restart=True)
        return [t async for t in stream], stream


def test_worker_killed_mid_batch_rerun_then_recorded_failed(local_ray: None,
                                                            tiny_model_path: Path) -> None:
    factory = functools.partial(_fake_policy, str(tiny_model_path), 1.5)
    config = RayRolloutConfig(workers=2, num_cpus=1, episode_retries=1, respawn=True)
    with RayWorkerPool(CALC, factory, config, concurrency=4) as pool:
        pool.update_weights({"w": [2.0]})
        # 1. Re-run: the dead worker's 4 in-flight episodes run again on the other one.
        trajs, stream = asyncio.run(_kill_mid_batch(pool))
        assert len(trajs) == 8 and sorted(t.metadata["episode"] for t in trajs) == list(range(8))
        assert pool.deaths == 1 and stream.reruns == 4
        assert all(t.end_reason == "terminated" for t in trajs)
        assert len(pool.workers) == 2  # replaced, and at the current weights
        assert pool.weight_versions() == [1, 1]
        # 2. No retries left: the in-flight episodes are recorded as failed, never dropped.
        pool.ray_config = dataclasses.replace(config, episode_retries=0, respawn=False)
        trajs, stream = asyncio.run(_kill_mid_batch(pool))
        assert len(trajs) == 8 and sorted(t.metadata["episode"] for t in trajs) == list(range(8))
        failed = [t for t in trajs if t.end_reason == "error"]
        assert pool.deaths == 2 and stream.reruns == 0 and len(failed) == 4
        assert all("died during the episode" in t.error and t.success is False for t in failed)
        assert all(t.end_reason == "terminated" for t in trajs if t not in failed)
