"""The async multi-turn rollout collector: environments in, token-in-token-out trajectories out.

Many episodes run at once on one asyncio loop. Each alternates a policy generation (the
policy is async and batches requests in flight) and an env step; env work (``make``,
``reset``, ``step``, ``close``) runs in a thread pool so that a slow tool never holds up
the generation of other episodes.

Per episode::

    messages = env.reset(seed, options) -> prompt ids (chat template, generation prompt)
    repeat:
        ids, logprobs = policy(prompt)  -> appended as model tokens (mask 1)
        messages = env.step(text)       -> only their tokens appended (mask 0)
    until terminated / truncated / a collector limit

Every way an episode ends is recorded in ``Trajectory.end_reason`` (see
:data:`agentrl.trajectory.END_REASONS`); a limit sets ``truncated``. An env that raises
fails only its own episode (``end_reason="error"``), and so does a
:class:`~agentrl.errors.PolicyError` (server down, prompt too long); a
:class:`~agentrl.errors.ChatTemplateError` stops the whole collection, since every
episode would hit it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import math
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agentrl.errors import ConfigError, PolicyError
from agentrl.policy.base import Generation, Policy
from agentrl.rollout.config import RolloutConfig
from agentrl.rollout.spec import EpisodeSpec, SpecLike, as_specs
from agentrl.rollout.tito import TokenConversation
from agentrl.trajectory import Trajectory, Turn

__all__ = ["EnvSource", "collect", "collect_sync", "episode_plan"]

#: A registered env id (made with :func:`agentrl.registry.make`) or a zero-argument factory.
EnvSource = str | Callable[[], Any]
#: Called with each finished trajectory (in completion order).
ProgressFn = Callable[[Trajectory], None]


class _EnvFailure(Exception):
    """The env raised or broke its contract; fails one episode."""


def episode_plan(
    specs: Sequence[SpecLike], group_size: int, run_id: str
) -> list[EpisodeSpec]:
    """Every episode to run: ``group_size`` consecutive copies of each spec, sharing its
    group id (a spec without one gets ``f"{run_id}-{i}"``)."""
    plan = []
    for i, spec in enumerate(as_specs(specs)):
        if not spec.group_id:
            spec = dataclasses.replace(spec, group_id=f"{run_id}-{i}")
        plan.extend([spec] * group_size)
    return plan


def _check_messages(messages: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(messages, list | tuple) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in messages
    ):
        raise _EnvFailure(
            f"{where} returned messages that are not a list of {{'role': str, 'content': str}} "
            f"dicts: {messages!r:.200}"
        )
    return [dict(m) for m in messages]


def _json_safe(info: Any) -> dict[str, Any]:
    """The JSON-serializable entries of an env's ``info`` (others are dropped), copied."""
    if not isinstance(info, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in info.items():
        try:
            out[str(key)] = json.loads(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError):
            continue
    return out


def _task_id(info: dict[str, Any]) -> str | None:
    value = info.get("task_id")
    return None if value is None or value == "" else str(value)


def _success(info: Any) -> bool | None:
    value = info.get("success") if isinstance(info, dict) else None
    return None if value is None else bool(value)


class _Collector:
    def __init__(
        self,
        env: EnvSource,
        policy: Policy,
        config: RolloutConfig,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.env = env
        self.policy = policy
        self.config = config
        self.pool = pool
        self.semaphore = asyncio.Semaphore(config.concurrency)
        # The model's own window caps the episode too (a backend would cut the turn there).
        model_len = getattr(policy, "max_model_len", None)
        self.max_context = min(config.max_context, model_len or config.max_context)

    def _make_env(self) -> Any:
        if isinstance(self.env, str):
            from agentrl.registry import make

            return make(self.env, **self.config.env_kwargs)
        return self.env()

    async def _env_call(self, timing: dict[str, float], what: str, fn: Callable[..., Any],
                        *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        try:
            return await loop.run_in_executor(self.pool, functools.partial(fn, *args, **kwargs))
        except Exception as exc:  # env code is user code: any failure fails only this episode
            raise _EnvFailure(f"{what} raised {type(exc).__name__}: {exc}") from exc
        finally:
            timing["env_s"] += time.perf_counter() - t0

    async def _generate(self, timing: dict[str, float], prompt: list[int], params: Any) -> Generation:
        t0 = time.perf_counter()
        try:
            gens = await self.policy.generate(prompt, params)
        finally:
            timing["generate_s"] += time.perf_counter() - t0
        if not gens or len(gens[0].token_ids) != len(gens[0].logprobs):
            raise PolicyError(
                f"{type(self.policy).__name__}.generate returned "
                + ("no completion" if not gens else
                   f"{len(gens[0].token_ids)} token ids but {len(gens[0].logprobs)} logprobs")
            )
        return gens[0]

    async def _step(self, timing: dict[str, float], env: Any, action: str, turn: int
                    ) -> tuple[list[dict[str, Any]], float, bool, bool, Any]:
        """``env.step(action)`` in the pool, its output checked against the env contract."""
        step = await self._env_call(timing, f"env.step (turn {turn})", env.step, action)
        if not isinstance(step, tuple) or len(step) != 5:
            raise _EnvFailure(f"env.step returned {step!r:.200}, expected a 5-tuple")
        new, reward, terminated, truncated, info = step
        try:
            value = float(reward)
        except (TypeError, ValueError) as exc:
            raise _EnvFailure(f"env.step returned a non-numeric reward {reward!r}") from exc
        if not math.isfinite(value):
            raise _EnvFailure(f"env.step returned a non-finite reward {reward!r}")
        return _check_messages(new, "env.step"), value, bool(terminated), bool(truncated), info

    async def episode(self, index: int, spec: EpisodeSpec) -> Trajectory:
        async with self.semaphore:
            return await self._episode(index, spec)

    async def _episode(self, index: int, spec: EpisodeSpec) -> Trajectory:
        cfg = self.config
        options = spec.reset_options()
        reset_info: dict[str, Any] = {}
        t_start = time.perf_counter()
        timing = {"generate_s": 0.0, "env_s": 0.0}
        env: Any = None
        env_id = self.env if isinstance(self.env, str) else ""
        conv: TokenConversation | None = None
        turns: list[Turn] = []
        success: bool | None = None
        terminated = truncated = False
        end_reason = "terminated"
        error: str | None = None
        dropped = 0
        try:
            env = await self._env_call(timing, "making the env", self._make_env)
            env_spec = getattr(env, "spec", None)
            env_id = env_id or (
                env_spec.id if env_spec is not None
                else type(getattr(env, "unwrapped", env)).__name__
            )
            first, info = await self._env_call(
                timing, "env.reset", env.reset, seed=spec.seed, options=options
            )
            reset_info = _json_safe(info)
            first = _check_messages(first, "env.reset")
            if not first:
                raise _EnvFailure("env.reset returned no messages (a prompt needs at least one)")
            conv = TokenConversation(self.policy.tokenizer, first)
            reserve = conv.closing_length()
            while True:
                budget = self.max_context - len(conv) - reserve
                if budget < 1:
                    end_reason, truncated = "max_context", True
                    break
                max_tokens = min(cfg.max_new_tokens, budget)
                gen = await self._generate(
                    timing, list(conv.token_ids), cfg.sampling(index, len(turns), max_tokens)
                )
                model_turn = conv.add_model_turn(gen.token_ids, gen.logprobs)
                turn = Turn(model_turn.start, model_turn.end, 0.0, gen.finish_reason,
                            weight_version=gen.weight_version)
                turns.append(turn)
                if gen.finish_reason == "length":
                    if max_tokens < cfg.max_new_tokens:  # the context, not the turn limit, cut it
                        end_reason, truncated = "max_context", True
                        break
                    if cfg.truncate_on_length:
                        end_reason, truncated = "max_new_tokens", True
                        break
                new, turn.reward, terminated, truncated, info = await self._step(
                    timing, env, model_turn.content, len(turns)
                )
                turn.info = _json_safe(info)
                success = _success(info)
                done = terminated or truncated or len(turns) >= cfg.max_turns
                delta = conv.env_delta(new, add_generation_prompt=not done)
                room = self.max_context - len(conv) - len(delta.token_ids)
                if room >= (0 if done else reserve + 1):
                    conv.append_env(delta)
                else:
                    dropped = len(new)
                    if not done:
                        end_reason, truncated = "max_context", True
                        break
                if terminated:
                    end_reason = "terminated"
                elif truncated:
                    end_reason = "env_truncated"
                elif done:
                    end_reason, truncated = "max_turns", True
                if done:
                    break
        except (_EnvFailure, PolicyError) as exc:
            end_reason, error, success = "error", str(exc), False
        if conv is not None:
            conv.verify()  # a last model turn not followed by env messages is checked here
        if env is not None:
            try:
                await self._env_call(timing, "env.close", env.close)
            except _EnvFailure as exc:
                if error is None:
                    end_reason, error, success = "error", str(exc), False
        return Trajectory(
            env_id=env_id,
            token_ids=list(conv.token_ids) if conv else [],
            loss_mask=list(conv.loss_mask) if conv else [],
            logprobs=list(conv.logprobs) if conv else [],
            prompt_len=conv.prompt_len if conv else 0,
            turns=turns,
            seed=spec.seed,
            group_id=spec.group_id,
            success=success,
            terminated=terminated and end_reason == "terminated",
            truncated=truncated and end_reason not in ("terminated", "error"),
            end_reason=end_reason,
            error=error,
            messages=list(conv.messages) if conv else [],
            metadata={
                "episode": index,
                "policy": type(self.policy).__name__,
                "time_s": time.perf_counter() - t_start,
                **timing,
                **({"dropped_messages": dropped} if dropped else {}),
            },
            task_id=spec.task_id if spec.task_id is not None else _task_id(reset_info),
            options=_json_safe(options),
            reset_info=reset_info,
        )


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
            Every episode gets its own env instance.
        policy: any :class:`~agentrl.policy.base.Policy`; its ``tokenizer`` renders the
            env messages with its chat template.
        specs: one :class:`EpisodeSpec` (or int seed, or ``None`` = unseeded) per task;
            each is run ``config.group_size`` times and those episodes share a
            ``group_id``. ``env.reset(seed=spec.seed, options=spec.reset_options())``.
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
    plan = episode_plan(specs, config.group_size, uuid.uuid4().hex[:8])
    await policy.prepare()  # a server that is down fails here, with its own clear error
    if getattr(policy, "tokenizer", None) is None:
        raise ConfigError(
            f"{type(policy).__name__} has no tokenizer; the collector renders env messages "
            "with the policy's chat template. For a server, pass the tokenizer's folder or hub "
            "id (OpenAIPolicy(tokenizer=...), or --policy-kwargs '{\"tokenizer\": \"PATH\"}')"
        )
    if isinstance(env, str):
        import gymnasium as gym

        if env not in gym.registry and ":" not in env:
            from agentrl.registry import make

            make(env)  # raises EnvNotFoundError naming the closest registered ids
    if not plan:
        return []
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plan), desc="episodes", unit="ep")
    callback = progress if callable(progress) else None
    pool = ThreadPoolExecutor(max_workers=min(config.concurrency, len(plan)),
                              thread_name_prefix="agentrl-env")
    collector = _Collector(env, policy, config, pool)

    async def run(index: int, spec: EpisodeSpec) -> Trajectory:
        traj = await collector.episode(index, spec)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(ok=traj.success, refresh=False)
        if callback is not None:
            callback(traj)
        return traj

    try:
        async with asyncio.TaskGroup() as group:  # one failure (ChatTemplateError) cancels all
            tasks = [group.create_task(run(k, spec)) for k, spec in enumerate(plan)]
    except BaseExceptionGroup as eg:
        # Episodes catch their own env/policy failures, so what lands here is one cause
        # shared by all (a template error, a bug): raise it as itself, not as a group.
        raise eg.exceptions[0] from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        if bar is not None:
            bar.close()
    return [t.result() for t in tasks]


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
