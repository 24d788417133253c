"""One episode: env messages in, a token-in-token-out :class:`~agentrl.trajectory.Trajectory` out.

Per episode::

    messages = env.reset(seed, options) -> prompt ids (chat template, generation prompt)
    repeat:
        ids, logprobs = policy(prompt)    -> appended as model tokens (mask 1)
        messages = env.step(text)         -> only their tokens appended (mask 0)
    until terminated / truncated / a collector limit

Every way an episode ends is recorded in ``Trajectory.end_reason`` (see
:data:`agentrl.trajectory.END_REASONS`); a limit sets ``truncated``. An env that raises
fails only its own episode (``end_reason="error"``) and is retired from the env pool, and
a :class:`~agentrl.errors.PolicyError` (server down, prompt too long) fails only its
episode; a :class:`~agentrl.errors.ChatTemplateError` propagates (every episode would hit it).
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from agentrl.errors import PolicyError
from agentrl.policy.base import Generation, Policy
from agentrl.rollout.config import RolloutConfig
from agentrl.rollout.envpool import EnvFailure, EnvHandle, EnvPool
from agentrl.rollout.spec import EpisodeSpec
from agentrl.rollout.tito import TokenConversation
from agentrl.trajectory import Trajectory, Turn

__all__ = ["EpisodeRunner"]


def _check_messages(messages: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(messages, list | tuple) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in messages
    ):
        raise EnvFailure(
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


def _env_name(env: Any) -> str:
    """The env's registered id, or its class name."""
    spec = getattr(env, "spec", None)  # gymnasium's EnvSpec, where the env was registered
    return spec.id if spec is not None else type(getattr(env, "unwrapped", env)).__name__


def _success(info: Any) -> bool | None:
    value = info.get("success") if isinstance(info, dict) else None
    return None if value is None else bool(value)


class EpisodeRunner:
    """Runs one episode at a time per call (many calls run concurrently on one loop)."""

    def __init__(self, envs: EnvPool, policy: Policy, config: RolloutConfig) -> None:
        self.envs = envs
        self.policy = policy
        self.config = config
        # The model's own window caps the episode too (a backend would cut the turn there).
        model_len = policy.max_model_len
        self.max_context = min(config.max_context, model_len or config.max_context)

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

    async def _step(self, timing: dict[str, float], env: EnvHandle, action: str, turn: int
                    ) -> tuple[list[dict[str, Any]], float, bool, bool, Any]:
        """``env.step(action)``, its output checked against the env contract."""
        step = await env.step(timing, action, turn)
        if not isinstance(step, tuple) or len(step) != 5:
            raise EnvFailure(f"env.step returned {step!r:.200}, expected a 5-tuple")
        new, reward, terminated, truncated, info = step
        try:
            value = float(reward)
        except (TypeError, ValueError) as exc:
            raise EnvFailure(f"env.step returned a non-numeric reward {reward!r}") from exc
        if not math.isfinite(value):
            raise EnvFailure(f"env.step returned a non-finite reward {reward!r}")
        return _check_messages(new, "env.step"), value, bool(terminated), bool(truncated), info

    async def run(self, index: int, spec: EpisodeSpec) -> Trajectory:
        """Run episode number ``index`` (its sampling seeds derive from it) of ``spec``."""
        cfg = self.config
        options = spec.reset_options()
        reset_info: dict[str, Any] = {}
        t_start = time.perf_counter()
        timing = {"generate_s": 0.0, "env_s": 0.0}
        env: EnvHandle | None = None
        env_id = self.envs.source if isinstance(self.envs.source, str) else ""
        conv: TokenConversation | None = None
        turns: list[Turn] = []
        success: bool | None = None
        terminated = truncated = False
        end_reason = "terminated"
        error: str | None = None
        error_source: str | None = None  # "env" or "policy" when the episode errored
        dropped = 0
        try:
            env = await self.envs.acquire(timing)
            env_id = env_id or _env_name(env.env)
            reset = await env.reset(timing, spec.seed, options)
            if not isinstance(reset, tuple) or len(reset) != 2:
                raise EnvFailure(f"env.reset returned {reset!r:.200}, expected (messages, info)")
            first, info = reset
            reset_info = _json_safe(info)
            first = _check_messages(first, "env.reset")
            if not first:
                raise EnvFailure("env.reset returned no messages (a prompt needs at least one)")
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
        except EnvFailure as exc:
            end_reason, error, success, error_source = "error", str(exc), False, "env"
            if env is not None:  # its state is unknown: never reuse it
                await self.envs.discard(env)
                env = None
        except PolicyError as exc:
            end_reason, error, success, error_source = "error", str(exc), False, "policy"
        # Anything else (cancellation, a template error) propagates; the env stays out of
        # the idle list and is closed with the pool.
        if env is not None:
            self.envs.release(env)
        if conv is not None:
            conv.verify()  # a last model turn not followed by env messages is checked here
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
                **({"error_source": error_source} if error_source else {}),
            },
            task_id=spec.task_id if spec.task_id is not None else _task_id(reset_info),
            options=_json_safe(options),
            reset_info=reset_info,
        )
