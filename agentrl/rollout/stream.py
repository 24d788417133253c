"""Collection as a stream: submit episodes while it runs, take trajectories as they finish.

>>> async with RolloutStream("agentrl/Calculator-v0", policy, config) as stream:
...     stream.submit(EpisodeSpec(seed=0), count=4)    # a group of 4
...     async for traj in stream:                      # completion order
...         if want_more:
...             stream.submit(7)
...         else:
...             stream.close_input()                    # iteration ends once all are in

At most ``config.concurrency`` episodes run at once; the rest wait in submission order.
Env instances are pooled for the stream's lifetime and reused across episodes (reset
between them); all are closed when the stream closes.
"""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from types import TracebackType
from typing import Any

from agentrl.errors import ConfigError
from agentrl.policy.base import Policy
from agentrl.rollout.config import RolloutConfig
from agentrl.rollout.envpool import EnvPool, EnvSource
from agentrl.rollout.episode import EpisodeRunner
from agentrl.rollout.spec import SpecLike, as_spec
from agentrl.trajectory import Trajectory

__all__ = ["RolloutStream"]

_CLOSED = object()  # wakes an iterator waiting on an empty queue after close_input()


class RolloutStream:
    """Runs submitted episodes concurrently and yields their trajectories as they finish.

    Args:
        env: a registered env id (made with ``config.env_kwargs``) or a zero-argument
            factory. Instances are reused across episodes; one that raised is closed and
            replaced. Envs implementing :class:`agentrl.env.AsyncEnv` are awaited
            directly, others run in a thread pool of ``config.concurrency`` threads.
        policy: any :class:`~agentrl.policy.base.Policy` with a tokenizer.
        config: limits and sampling (default :class:`RolloutConfig()`); ``group_size`` is
            not used here (``submit(spec, count=...)`` says how many).
        run_id: prefix of the group ids given to specs without one (default: random).

    Use as ``async with RolloutStream(...) as stream``; leaving the block cancels the
    episodes still running and closes the envs.
    """

    def __init__(self, env: EnvSource, policy: Policy, config: RolloutConfig | None = None,
                 *, run_id: str | None = None) -> None:
        if not isinstance(env, str) and not callable(env):
            raise ConfigError(
                f"env must be a registered env id or a zero-argument factory, got {env!r:.80}"
            )
        self.env = env
        self.policy = policy
        self.config = config or RolloutConfig()
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self._submitted = 0  # episodes (copies counted)
        self._specs = 0  # submit() calls: numbers the fresh group ids
        self._yielded = 0
        self._input_closed = False
        self._started = False
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._results: asyncio.Queue[Any] = asyncio.Queue()
        self._executor: ThreadPoolExecutor | None = None
        self._envs: EnvPool | None = None
        self._runner: EpisodeRunner | None = None
        self._slots: asyncio.Semaphore | None = None

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        """Check the policy and env, make the thread pool (``async with`` calls it)."""
        if self._started:
            return
        await self.policy.prepare()  # a server that is down fails here, with its own error
        if getattr(self.policy, "tokenizer", None) is None:  # Policy declares it; may be None
            raise ConfigError(
                f"{type(self.policy).__name__} has no tokenizer; the collector renders env "
                "messages with the policy's chat template. For a server, pass the tokenizer's "
                "folder or hub id (OpenAIPolicy(tokenizer=...), or --policy-kwargs "
                "'{\"tokenizer\": \"PATH\"}')"
            )
        if isinstance(self.env, str):
            import gymnasium as gym

            if self.env not in gym.registry and ":" not in self.env:
                from agentrl.registry import make

                make(self.env)  # raises EnvNotFoundError naming the closest registered ids
        self._executor = ThreadPoolExecutor(max_workers=self.config.concurrency,
                                            thread_name_prefix="agentrl-env")
        self._envs = EnvPool(self.env, self.config.env_kwargs, self._executor)
        self._runner = EpisodeRunner(self._envs, self.policy, self.config)
        self._slots = asyncio.Semaphore(self.config.concurrency)
        self._started = True

    async def aclose(self) -> None:
        """Cancel episodes still running, close every env, stop the thread pool."""
        if self._closed:
            return
        self._closed = True
        self._input_closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._envs is not None:
            await self._envs.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> RolloutStream:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    # -- input ------------------------------------------------------------------------
    def submit(self, spec: SpecLike, count: int = 1) -> list[int]:
        """Queue ``count`` episodes of ``spec`` (an :class:`EpisodeSpec`, a seed or None).

        The copies share the spec's group id, or a fresh one (``f"{run_id}-{n}"``) when
        it has none. Call from the stream's event loop, after ``start``.

        Returns:
            The episode numbers given to the copies (``Trajectory.metadata["episode"]``;
            turn ``t`` of episode ``k`` samples with seed ``config.seed + k*max_turns + t``).

        Raises:
            ConfigError: bad spec or count, the stream is not started, or its input is closed.
        """
        if not self._started:
            raise ConfigError("RolloutStream is not started: use `async with RolloutStream(...)`")
        if self._input_closed:
            raise ConfigError("this RolloutStream's input is closed: submit before close_input()")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"count must be an int >= 1, got {count!r}")
        spec = as_spec(spec)
        if not spec.group_id:
            spec = replace(spec, group_id=f"{self.run_id}-{self._specs}")
        self._specs += 1
        indices = list(range(self._submitted, self._submitted + count))
        self._submitted += count
        for index in indices:
            task = asyncio.get_running_loop().create_task(self._run(index, spec))
            self._tasks.add(task)
            task.add_done_callback(self._done)
        return indices

    def close_input(self) -> None:
        """No more submissions: iteration ends once every submitted episode is yielded."""
        if not self._input_closed:
            self._input_closed = True
            self._results.put_nowait(_CLOSED)

    async def _run(self, index: int, spec: Any) -> None:
        assert self._runner is not None and self._slots is not None  # set by start()
        async with self._slots:
            traj = await self._runner.run(index, spec)
        self._results.put_nowait(traj)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # Episodes catch their own env/policy failures, so this is a cause shared by
            # all (a chat template error, a bug): the consumer gets it from __anext__.
            self._results.put_nowait(exc)

    # -- output -----------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        """Episodes submitted and not yet yielded (waiting, running, or done and queued)."""
        return self._submitted - self._yielded

    @property
    def submitted(self) -> int:
        """Episodes submitted so far."""
        return self._submitted

    @property
    def envs_made(self) -> int:
        """Env instances made so far (reuse keeps it at most ``config.concurrency`` plus
        one per env that raised)."""
        return self._envs.made if self._envs is not None else 0

    def __aiter__(self) -> RolloutStream:
        return self

    async def __anext__(self) -> Trajectory:
        """The next finished trajectory (completion order).

        Raises:
            StopAsyncIteration: input closed and every submitted episode yielded.
            ChatTemplateError (or another collection-wide error): raised by an episode;
                the stream should then be closed (leaving ``async with`` does it).
        """
        while True:
            if self._input_closed and self.in_flight == 0:
                raise StopAsyncIteration
            item = await self._results.get()
            if item is _CLOSED:
                continue
            if isinstance(item, BaseException):
                self._yielded += 1
                raise item
            self._yielded += 1
            return item
