"""The batch form of collection: a list of episodes in, their trajectories out, in plan order.

:func:`collect` submits every episode to a :class:`~agentrl.rollout.stream.RolloutStream`
(``group_size`` copies per spec, sharing a group id), waits for all of them, and returns
them in plan order. Many episodes run at once on one asyncio loop; each alternates a
policy generation (the policy is async and batches requests in flight) and an env step
(in a thread pool, or awaited for :class:`~agentrl.env.AsyncEnv` envs). See
:mod:`agentrl.rollout.episode` for what one episode records and how it can end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from agentrl.policy.base import Policy
from agentrl.rollout.config import RolloutConfig
from agentrl.rollout.envpool import EnvSource
from agentrl.rollout.spec import EpisodeSpec, SpecLike, as_specs
from agentrl.rollout.stream import RolloutStream
from agentrl.trajectory import Trajectory

__all__ = ["EnvSource", "collect", "collect_sync", "drain_in_plan_order", "episode_plan"]

#: Called with each finished trajectory (in completion order).
ProgressFn = Callable[[Trajectory], None]


def episode_plan(
    specs: Sequence[SpecLike], group_size: int, run_id: str
) -> list[EpisodeSpec]:
    """Every episode to run: ``group_size`` consecutive copies of each spec, sharing its
    group id (a spec without one gets ``f"{run_id}-{i}"``, as :func:`collect` gives it)."""
    plan = []
    for i, spec in enumerate(as_specs(specs)):
        if not spec.group_id:
            spec = dataclasses.replace(spec, group_id=f"{run_id}-{i}")
        plan.extend([spec] * group_size)
    return plan


async def collect(
    env: EnvSource,
    policy: Policy,
    specs: Sequence[SpecLike],
    config: RolloutConfig | None = None,
    *,
    progress: bool | ProgressFn | None = None,
) -> list[Trajectory]:
    """Run ``len(specs) * config.group_size`` episodes concurrently; return their trajectories.

    Args:
        env: a registered env id (``"agentrl/Calculator-v0"``; made with
            ``config.env_kwargs``) or a zero-argument callable returning a fresh env.
            Env instances are reused across episodes and closed at the end.
        policy: any :class:`~agentrl.policy.base.Policy`; its ``tokenizer`` renders the
            env messages with its chat template.
        specs: one :class:`EpisodeSpec` (or int seed, or ``None`` = unseeded) per task;
            each is run ``config.group_size`` times and those episodes share a
            ``group_id``. ``env.reset(seed=spec.seed, options=spec.reset_options())``.
            :func:`~agentrl.rollout.specs_for` lists every task of a finite env.
        config: limits and sampling (defaults to :class:`RolloutConfig()`).
        progress: ``True`` for a tqdm bar, or a callable invoked with each finished
            trajectory.

    Returns:
        Trajectories in plan order: ``group_size`` consecutive episodes per spec.

    Raises:
        ChatTemplateError: the policy's chat template is not prefix-preserving.
        ConfigError: bad arguments.
        EnvNotFoundError: ``env`` is an id that is not registered.
    """
    config = config or RolloutConfig()
    plan = as_specs(specs)
    if not plan:
        return []
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plan) * config.group_size, desc="episodes", unit="ep")
    callback = progress if callable(progress) else None

    def on_episode(traj: Trajectory) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(ok=traj.success, refresh=False)
        if callback is not None:
            callback(traj)

    try:
        async with RolloutStream(env, policy, config, run_id=uuid.uuid4().hex[:8]) as stream:
            return await drain_in_plan_order(stream, plan, config.group_size, on_episode)
    finally:
        if bar is not None:
            bar.close()


async def drain_in_plan_order(stream: Any, plan: Sequence[EpisodeSpec], group_size: int,
                              on_episode: Callable[[Trajectory], None] | None = None,
                              ) -> list[Trajectory]:
    """The batch form of an entered stream (:class:`RolloutStream` or one with its
    interface): submit ``group_size`` episodes of each spec, close the input, and return
    the trajectories in plan order; ``on_episode`` sees each one as it finishes."""
    slots: dict[int, int] = {}
    results: list[Trajectory | None] = [None] * (len(plan) * group_size)
    for spec in plan:
        for index in stream.submit(spec, count=group_size):
            slots[index] = len(slots)
    stream.close_input()
    async for traj in stream:
        results[slots[traj.metadata["episode"]]] = traj
        if on_episode is not None:
            on_episode(traj)
    return [t for t in results if t is not None]


def collect_sync(
    env: EnvSource,
    policy: Policy,
    specs: Sequence[SpecLike],
    config: RolloutConfig | None = None,
    *,
    progress: bool | ProgressFn | None = None,
) -> list[Trajectory]:
    """:func:`collect` for synchronous code (runs its own event loop; inside a running
    loop, e.g. a notebook, ``await collect(...)`` instead)."""
    return asyncio.run(collect(env, policy, specs, config, progress=progress))
