"""Rollout workers as Ray actors, driven through the streaming collector's interface.

Each worker (a Ray actor) holds its own policy engine, made in the worker from a factory
or a ``load_policy`` spec such as ``"vllm:PATH"`` (or an ``openai:`` spec that shares one
server), and its own env pool (local envs, or ``RemoteEnv`` through ``env_kwargs={"remote":
URL}``). It runs episodes with the same :class:`~agentrl.rollout.episode.EpisodeRunner`
as a local :class:`~agentrl.rollout.RolloutStream`, with the *driver's* episode numbers,
so the sampling seeds (and, with a deterministic policy, the trajectories) are those of a
local collection.

>>> pool = RayWorkerPool("agentrl/Calculator-v0", "vllm:tiny", RayRolloutConfig(workers=4))
>>> pool.start()                           # ray.init() if needed, then the workers
>>> async with RayRolloutStream(pool, RolloutConfig()) as stream:   # as RolloutStream
...     stream.submit(EpisodeSpec(seed=0), count=8)
...     stream.close_input()
...     trajs = [t async for t in stream]
>>> pool.update_weights(model.state_dict())  # to every worker's engine (verified there)
>>> trajs = asyncio.run(ray_collect(pool, range(16), RolloutConfig(group_size=4)))

A worker that dies mid-batch loses only its in-flight episodes: each is re-run on another
worker (``episode_retries`` times), then recorded as a failed trajectory
(``end_reason="error"``), never dropped. A dead worker is replaced (``respawn``) and
brought to the current weights before it takes work. The same code runs on a cluster
(``RayRolloutConfig(address="ray://HOST:10001")`` or ``address="auto"``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from agentrl.errors import ConfigError
from agentrl.rollout.collector import drain_in_plan_order
from agentrl.rollout.config import RolloutConfig
from agentrl.rollout.envpool import EnvSource
from agentrl.rollout.spec import EpisodeSpec, SpecLike, as_spec, as_specs
from agentrl.trajectory import Trajectory

__all__ = ["RayRolloutConfig", "RolloutWorker", "RayWorkerPool", "RayRolloutStream",
           "ray_collect"]

#: A policy for the workers: a ``load_policy`` spec string, or a picklable zero-argument
#: factory that builds the policy inside the worker.
PolicySource = str | Callable[[], Any]


@dataclass(frozen=True)
class RayRolloutConfig:
    """How many rollout workers, where, and what happens when one dies."""

    workers: int = 2
    """Rollout worker actors."""
    address: str | None = None
    """Ray cluster to join (``"auto"``, ``"ray://HOST:10001"``); None: the running Ray, or a
    new local one."""
    num_cpus: float = 1.0
    """CPUs each worker reserves."""
    num_gpus: float = 0.0
    """GPUs each worker reserves (its engine's)."""
    episode_retries: int = 1
    """Times an episode whose worker died is re-run elsewhere before it is recorded failed."""
    respawn: bool = True
    """Replace a dead worker with a fresh one (brought to the current weights)."""

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"workers must be an int >= 1, got {self.workers!r}")
        if self.episode_retries < 0:
            raise ConfigError(f"episode_retries must be >= 0, got {self.episode_retries}")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ConfigError("num_cpus and num_gpus must be >= 0")


def _require_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("Ray rollout workers need ray: pip install 'agentrl[ray]'") from exc
    return ray


class RolloutWorker:
    """One rollout worker (run as a Ray actor by :class:`RayWorkerPool`): a policy and an
    env pool in its own process; episodes run concurrently on the actor's event loop."""

    def __init__(self, env: EnvSource, policy: PolicySource, env_kwargs: dict[str, Any],
                 concurrency: int, weights: tuple[Any, bool, float | None] | None = None) -> None:
        self.env = env
        self.policy_source = policy
        self.env_kwargs = dict(env_kwargs)
        self.concurrency = concurrency
        self.policy: Any = None
        self._weights = weights  # applied once the policy is up (a replacement worker)
        self._pool: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._runner: Any = None
        self._runner_config: RolloutConfig | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._start_lock = asyncio.Lock()

    async def start(self) -> int:
        """Make the policy and env pool (once); returns the worker's process id."""
        from agentrl.rollout.envpool import EnvPool

        async with self._start_lock:
            if self.policy is None:
                if isinstance(self.policy_source, str):
                    from agentrl.policy.loader import load_policy

                    policy = load_policy(self.policy_source)
                else:
                    policy = self.policy_source()
                await policy.prepare()
                if getattr(policy, "tokenizer", None) is None:
                    raise ConfigError(f"{type(policy).__name__} has no tokenizer")
                self._executor = ThreadPoolExecutor(max_workers=self.concurrency,
                                                    thread_name_prefix="agentrl-env")
                self._pool = EnvPool(self.env, self.env_kwargs, self._executor)
                self.policy = policy
                if self._weights is not None:
                    weights, verify, atol = self._weights
                    self._weights = None
                    await self.update_weights(weights, verify, atol)
        return os.getpid()

    async def run(self, index: int, spec: EpisodeSpec, config: RolloutConfig) -> Trajectory:
        """Episode number ``index`` of ``spec`` (``index`` sets its sampling seeds)."""
        from agentrl.rollout.episode import EpisodeRunner

        if self.policy is None:
            await self.start()
        if self._runner is None or self._runner_config != config:
            self._runner, self._runner_config = EpisodeRunner(self._pool, self.policy, config), config
        async with self._slots:
            traj = await self._runner.run(index, spec)
        traj.metadata["worker_pid"] = os.getpid()
        return traj

    async def update_weights(self, weights: Any, verify: bool, atol: float | None) -> float | None:
        """Load new weights into this worker's engine (the policy's own verification)."""
        import ray

        from agentrl.policy.base import WeightSync, require_capability

        if isinstance(weights, ray.ObjectRef):  # a replacement worker's initial weights
            weights = await weights
        if self.policy is None:
            await self.start()
        require_capability(self.policy, WeightSync, "weight sync to Ray rollout workers")
        return await self.policy.aupdate_weights(weights, verify=verify, atol=atol)

    async def weight_version(self) -> int | None:
        if self.policy is None:
            await self.start()  # a replacement worker applies the last weights on start
        return getattr(self.policy, "weight_version", None)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self.policy is not None:
            await self.policy.aclose()


@dataclass
class _Worker:
    actor: Any
    pid: int = 0
    load: int = 0
    alive: bool = True


class RayWorkerPool:
    """Long-lived rollout worker actors (one policy engine + env pool each).

    Args:
        env: a registered env id or a picklable zero-argument env factory.
        policy: a ``load_policy`` spec (``"vllm:PATH"``, ``"openai:URL#model"``) or a
            picklable zero-argument factory, called inside each worker.
        ray_config: number of workers, cluster address, resources, failure handling.
        env_kwargs: arguments of ``make(env, ...)`` in the workers (e.g. ``remote=URL``).
        concurrency: most episodes in flight per worker.
    """

    def __init__(self, env: EnvSource, policy: PolicySource,
                 ray_config: RayRolloutConfig | None = None, *,
                 env_kwargs: dict[str, Any] | None = None, concurrency: int = 32) -> None:
        if not isinstance(env, str) and not callable(env):
            raise ConfigError(f"env must be an env id or a factory, got {env!r:.80}")
        if not isinstance(policy, str) and not callable(policy):
            raise ConfigError(f"policy must be a load_policy spec or a factory, got {policy!r:.80}")
        self.env = env
        self.policy = policy
        self.ray_config = ray_config or RayRolloutConfig()
        self.env_kwargs = dict(env_kwargs or {})
        self.concurrency = concurrency
        self.workers: list[_Worker] = []
        self.deaths = 0
        """Workers that died so far."""
        self._weights: Any = None  # (ObjectRef, verify, atol) of the last update
        self._updates = 0
        self._actor_cls: Any = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> RayWorkerPool:
        """Join or start Ray and start every worker (blocking until their policies are up)."""
        ray = _require_ray()
        if not ray.is_initialized():
            ray.init(address=self.ray_config.address, include_dashboard=False,
                     log_to_driver=False)
        self._actor_cls = ray.remote(RolloutWorker).options(
            num_cpus=self.ray_config.num_cpus, num_gpus=self.ray_config.num_gpus,
            max_concurrency=self.concurrency + 8)
        workers = [self._spawn() for _ in range(self.ray_config.workers)]
        pids = ray.get([w.actor.start.remote() for w in workers])
        for worker, pid in zip(workers, pids, strict=True):
            worker.pid = pid
        self.workers = workers
        return self

    def _spawn(self) -> _Worker:
        return _Worker(self._actor_cls.remote(self.env, self.policy, self.env_kwargs,
                                              self.concurrency, self._weights))

    def close(self) -> None:
        """Close every worker's envs and policy, then end the actors."""
        ray = _require_ray()
        alive = [w for w in self.workers if w.alive]
        try:
            ray.get([w.actor.close.remote() for w in alive], timeout=60)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            pass  # a worker that died or hangs is ended below all the same
        for worker in alive:
            ray.kill(worker.actor)
            worker.alive = False
        self.workers = []

    def __enter__(self) -> RayWorkerPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- work -----------------------------------------------------------------------------
    def _pick(self) -> _Worker | None:
        alive = [w for w in self.workers if w.alive]
        return min(alive, key=lambda w: w.load) if alive else None

    def _died(self, worker: _Worker) -> None:
        if worker.alive:
            worker.alive = False
            self.deaths += 1
            self.workers.remove(worker)
            if self.ray_config.respawn:  # starts on its first call, at the current weights
                self.workers.append(self._spawn())

    async def run_episode(self, index: int, spec: EpisodeSpec, config: RolloutConfig
                          ) -> tuple[Trajectory, int]:
        """Run one episode on the least-loaded worker; re-run it elsewhere if that worker
        dies. Returns the trajectory and how many re-runs it took."""
        ray = _require_ray()
        reruns = 0
        while True:
            worker = self._pick()
            if worker is None:
                return _failed(index, spec, self.env, "no live rollout worker"), reruns
            worker.load += 1
            try:
                return await worker.actor.run.remote(index, spec, config), reruns
            except ray.exceptions.RayActorError as exc:
                self._died(worker)
                if reruns >= self.ray_config.episode_retries:
                    return _failed(index, spec, self.env, f"rollout worker (pid {worker.pid}) "
                                   f"died during the episode: {type(exc).__name__}"), reruns
                reruns += 1
            except ray.exceptions.RayTaskError as exc:
                raise exc.as_instanceof_cause() from None  # a collection-wide error
            finally:
                worker.load -= 1

    def update_weights(self, weights: Any, *, verify: bool = True,
                       atol: float | None = None) -> float | None:
        """Send ``weights`` (a state dict or module) to every worker's engine; blocking.
        Returns the largest verification difference any worker reported (None: none)."""
        ray = _require_ray()
        if hasattr(weights, "state_dict"):
            weights = {k: v.detach().cpu() for k, v in weights.state_dict().items()}
        ref = ray.put(weights)
        self._weights = (ref, verify, atol)
        self._updates += 1
        diffs = ray.get([w.actor.update_weights.remote(ref, verify, atol)
                         for w in self.workers if w.alive])
        values = [d for d in diffs if d is not None]
        return max(values) if values else None

    async def collect(self, specs: Sequence[SpecLike], config: RolloutConfig | None = None, *,
                      progress: Callable[[Trajectory], None] | None = None) -> list[Trajectory]:
        """:func:`ray_collect` on this pool (the trainer's ``collect`` call, on Ray)."""
        return await ray_collect(self, specs, config, progress=progress)

    @property
    def weight_version(self) -> int:
        """Weight updates sent to the workers so far (each worker's engine counts the same)."""
        return self._updates

    def weight_versions(self) -> list[int | None]:
        """Each live worker's policy weight version."""
        ray = _require_ray()
        return ray.get([w.actor.weight_version.remote() for w in self.workers if w.alive])


def _failed(index: int, spec: EpisodeSpec, env: EnvSource, reason: str) -> Trajectory:
    """The record of an episode that could not be run (never silently dropped)."""
    return Trajectory(
        env_id=env if isinstance(env, str) else "", token_ids=[], loss_mask=[], logprobs=[],
        prompt_len=0, seed=spec.seed, group_id=spec.group_id, success=False,
        end_reason="error", error=reason, metadata={"episode": index},
        task_id=spec.task_id, options=dict(spec.reset_options() or {}))


class RayRolloutStream:
    """:class:`~agentrl.rollout.RolloutStream`'s interface on a :class:`RayWorkerPool`:
    ``submit``, ``close_input``, ``async for`` in completion order, ``in_flight``.

    Every episode submitted comes out exactly once: its trajectory, or (its worker died
    more than ``episode_retries`` times) a failed one with ``end_reason="error"``.
    """

    def __init__(self, pool: RayWorkerPool, config: RolloutConfig | None = None, *,
                 run_id: str | None = None) -> None:
        self.pool = pool
        self.config = config or RolloutConfig()
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self.reruns = 0
        """Episodes re-run after their worker died."""
        self._submitted = self._specs = self._yielded = 0
        self._input_closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._results: asyncio.Queue[Any] = asyncio.Queue()

    async def __aenter__(self) -> RayRolloutStream:
        if not self.pool.workers:
            raise ConfigError("the RayWorkerPool is not started: call pool.start() first")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop waiting for episodes still running (the workers finish them and go on)."""
        self._input_closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def submit(self, spec: SpecLike, count: int = 1) -> list[int]:
        """Queue ``count`` episodes of ``spec``; returns their episode numbers."""
        if self._input_closed:
            raise ConfigError("this stream's input is closed: submit before close_input()")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"count must be an int >= 1, got {count!r}")
        spec = as_spec(spec)
        if not spec.group_id:
            spec = dataclasses.replace(spec, group_id=f"{self.run_id}-{self._specs}")
        self._specs += 1
        indices = list(range(self._submitted, self._submitted + count))
        self._submitted += count
        loop = asyncio.get_running_loop()
        for index in indices:
            task = loop.create_task(self._run(index, spec))
            self._tasks.add(task)
            task.add_done_callback(self._done)
        return indices

    def close_input(self) -> None:
        """No more submissions: iteration ends once every submitted episode is yielded."""
        self._input_closed = True
        self._results.put_nowait(None)

    async def _run(self, index: int, spec: EpisodeSpec) -> None:
        traj, reruns = await self.pool.run_episode(index, spec, self.config)
        self.reruns += reruns
        self._results.put_nowait(traj)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._results.put_nowait(exc)

    @property
    def in_flight(self) -> int:
        """Episodes submitted and not yet yielded."""
        return self._submitted - self._yielded

    @property
    def submitted(self) -> int:
        return self._submitted

    def __aiter__(self) -> RayRolloutStream:
        return self

    async def __anext__(self) -> Trajectory:
        while True:
            if self._input_closed and self.in_flight == 0:
                raise StopAsyncIteration
            item = await self._results.get()
            if item is None:
                continue
            self._yielded += 1
            if isinstance(item, BaseException):
                raise item
            return item


async def ray_collect(pool: RayWorkerPool, specs: Sequence[SpecLike],
                      config: RolloutConfig | None = None, *,
                      progress: Callable[[Trajectory], None] | None = None) -> list[Trajectory]:
    """:func:`agentrl.rollout.collect` on Ray workers: ``config.group_size`` episodes per
    spec, returned in plan order (failed episodes included, ``end_reason="error"``)."""
    config = config or RolloutConfig()
    async with RayRolloutStream(pool, config) as stream:
        return await drain_in_plan_order(stream, as_specs(specs), config.group_size, progress)
