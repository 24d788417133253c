"""Running an evaluation: every task of each env once x samples, through the streaming collector.

:func:`evaluate` runs a policy (or each env's oracle, ``policy=None``) on env ids and
returns an :class:`EvalRun`: one :class:`~agentrl.eval.score.EpisodeRecord` per episode
and the wall time per env. Episodes run concurrently (``config.concurrency``); a live
line on stderr shows the success so far per env.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from agentrl.eval.score import EpisodeRecord, record_of
from agentrl.rollout.config import RolloutConfig
from agentrl.rollout.spec import EpisodeSpec, specs_for

__all__ = ["EvalRun", "Progress", "evaluate", "evaluate_oracle"]


@dataclass
class EvalRun:
    """Records and timings of one evaluation."""

    records: dict[str, list[EpisodeRecord]] = field(default_factory=dict)
    """Env id -> episode records (completion order)."""
    wall_s: dict[str, float] = field(default_factory=dict)
    """Env id -> wall time of its episodes."""
    trajectories: dict[str, list[Any]] = field(default_factory=dict)
    """Env id -> trajectories (kept only when asked)."""


class Progress:
    """A live status line per env: episodes done / total and success so far."""

    def __init__(self, stream: TextIO | None = None, every_s: float = 0.5) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self._last = 0.0
        self.env = ""
        self.total = self.done = self.wins = 0

    def start(self, env_id: str, total: int) -> None:
        self.env, self.total, self.done, self.wins = env_id, total, 0, 0
        self._show(force=True)

    def update(self, success: bool) -> None:
        self.done += 1
        self.wins += bool(success)
        self._show(force=self.done == self.total)

    def finish(self) -> None:
        self._show(force=True)
        self.stream.write("\n")
        self.stream.flush()

    def _show(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        rate = self.wins / self.done if self.done else 0.0
        self.stream.write(f"\r{self.env}: {self.done}/{self.total} episodes, success so far "
                          f"{rate:.3f} ({self.wins})   ")
        self.stream.flush()


def _specs(env_id: str, samples: int, episodes: int | None, env_kwargs: dict[str, Any]) -> list[EpisodeSpec]:
    from agentrl.registry import make

    env = make(env_id, **env_kwargs)
    try:
        return specs_for(env, samples=samples, episodes=episodes)
    finally:
        env.close()


async def _run_env(env_id: str, policy: Any, specs: list[EpisodeSpec], config: RolloutConfig,
                   on_done: Callable[[Any], None]) -> list[Any]:
    try:
        from agentrl.rollout.stream import RolloutStream
    except ImportError:  # the batch collector (before the streaming one was available)
        from agentrl.rollout.collector import collect

        return await collect(env_id, policy, specs, config, progress=on_done)
    out: list[Any] = []
    async with RolloutStream(env_id, policy, config) as stream:
        for spec in specs:
            stream.submit(spec)
        stream.close_input()
        async for traj in stream:
            out.append(traj)
            on_done(traj)
    return out


def evaluate(policy: Any, env_ids: list[str], *, samples: int = 1, episodes: int | None = None,
             config: RolloutConfig | None = None, progress: Progress | None = None,
             keep_trajectories: bool = False) -> EvalRun:
    """Run ``policy`` on every task of each env ``samples`` times (or ``episodes`` seeded
    episodes of a generated env; for finite envs ``episodes`` caps the tasks)."""
    config = config or RolloutConfig()
    run = EvalRun()

    async def main() -> None:
        for env_id in env_ids:
            specs = _specs(env_id, samples, episodes, config.env_kwargs)
            if progress:
                progress.start(env_id, len(specs))

            def on_done(traj: Any) -> None:
                if progress:
                    progress.update(bool(traj.success))

            t0 = time.perf_counter()
            trajs = await _run_env(env_id, policy, specs, config, on_done)
            run.wall_s[env_id] = time.perf_counter() - t0
            run.records[env_id] = [record_of(t) for t in trajs]
            if keep_trajectories:
                run.trajectories[env_id] = trajs
            if progress:
                progress.finish()

    asyncio.run(main())
    return run


def evaluate_oracle(env_ids: list[str], *, samples: int = 1, episodes: int | None = None,
                    max_turns: int = 64, env_kwargs: dict[str, Any] | None = None,
                    progress: Progress | None = None) -> EvalRun:
    """Each env's own oracle (``env.oracle_action()``) on every task: the score a perfect
    policy gets under the env's checker (100% except where the checker rejects the data)."""
    from agentrl.registry import make

    run = EvalRun()
    for env_id in env_ids:
        specs = _specs(env_id, samples, episodes, env_kwargs or {})
        env = make(env_id, **(env_kwargs or {}))
        base = env.unwrapped
        records = []
        if progress:
            progress.start(env_id, len(specs))
        t_env = time.perf_counter()
        try:
            for spec in specs:
                t0 = time.perf_counter()
                env.reset(seed=spec.seed, options=spec.reset_options())
                turns, calls, ok, info = 0, 0, 0, {}
                end = "max_turns"
                while turns < max_turns:
                    _, _, terminated, truncated, info = env.step(base.oracle_action())
                    turns += 1
                    for call in info.get("tool_calls", []):
                        calls += 1
                        ok += bool(call.get("ok", True))
                    if terminated or truncated:
                        end = "terminated" if terminated else "env_truncated"
                        break
                success = bool(info.get("success"))
                failure = None if success else (info.get("failure") or ("limit_hit" if end != "terminated" else "wrong_answer"))
                records.append(EpisodeRecord(env_id, str(spec.task_id or f"seed-{spec.seed}"), success,
                                             failure, turns, calls, ok, 0, time.perf_counter() - t0,
                                             end, str(info.get("check") or "")))
                if progress:
                    progress.update(success)
        finally:
            env.close()
        run.wall_s[env_id] = time.perf_counter() - t_env
        run.records[env_id] = records
        if progress:
            progress.finish()
    return run
