"""Oracle demonstrations: an env's own solver played through the real chat template.

Each demonstration is an ordinary :class:`~agentrl.trajectory.Trajectory`, built with the
same :class:`~agentrl.rollout.tito.TokenConversation` the rollout collector uses: the
prompt and every env message are rendered by the policy's chat template exactly as in a
rollout, and each oracle action is appended as the model tokens a model would have to
generate (``tokenizer.encode(text)`` followed by the end-of-turn token). The loss mask is
1 exactly on those tokens, so supervised training on demos teaches the very token
sequences the collector later samples and feeds back.

The envs' oracles (``AgentEnv.oracle_action``) are deterministic solvers: binary search
for GuessNumber, the expression's value for Calculator, and so on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from agentrl.errors import ConfigError
from agentrl.rollout.tito import TokenConversation
from agentrl.trajectory import Trajectory, Turn

__all__ = ["oracle_trajectory", "oracle_demos", "end_of_turn_id"]


def end_of_turn_id(tokenizer: Any) -> int:
    """The token a model emits to end its turn (``<|im_end|>`` under ChatML)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError(
            f"tokenizer {type(tokenizer).__name__} has no eos_token: demonstrations need the "
            "end-of-turn token the model stops on"
        )
    return int(eos)


def _make(env: str | Callable[[], Any], env_kwargs: dict[str, Any]) -> Any:
    if isinstance(env, str):
        import agentrl.envs  # noqa: F401  (registers the built-in envs)
        from agentrl.registry import make

        return make(env, **env_kwargs)
    return env()


def oracle_trajectory(
    env: Any, tokenizer: Any, *, seed: int | None, max_turns: int = 32,
    options: dict[str, Any] | None = None,
) -> Trajectory:
    """Play one episode of ``env``'s oracle and record it token-exactly.

    Args:
        env: an agentrl env instance (wrapped or not); it is reset with ``seed``.
        tokenizer: the policy's tokenizer (its chat template renders the messages).
        seed: env seed (same seed, same task).
        max_turns: safety cap on oracle turns.
        options: passed to ``env.reset``.

    Raises:
        ConfigError: the env has no oracle (``oracle_action`` not implemented).
    """
    base = getattr(env, "unwrapped", env)
    first, _ = env.reset(seed=seed, options=options)
    conv = TokenConversation(tokenizer, first)
    eot = end_of_turn_id(tokenizer)
    turns: list[Turn] = []
    success: bool | None = None
    terminated = truncated = False
    while len(turns) < max_turns:
        try:
            action = base.oracle_action()
        except NotImplementedError as exc:
            raise ConfigError(
                f"{type(base).__name__} has no oracle solver; demonstrations need one "
                "(implement oracle_action), or train on a trajectory file instead (--data)"
            ) from exc
        ids = list(tokenizer.encode(action, add_special_tokens=False)) + [eot]
        model_turn = conv.add_model_turn(ids, [0.0] * len(ids))
        new, reward, terminated, truncated, info = env.step(model_turn.content)
        turns.append(Turn(model_turn.start, model_turn.end, float(reward), "stop",
                          {"oracle": True}))
        if info.get("success") is not None:
            success = bool(info["success"])
        done = terminated or truncated or len(turns) >= max_turns
        conv.add_env_messages(new, add_generation_prompt=not done)
        if done:
            break
    conv.verify()
    spec = getattr(env, "spec", None)
    return Trajectory(
        env_id=spec.id if spec is not None else type(base).__name__,
        token_ids=list(conv.token_ids),
        loss_mask=list(conv.loss_mask),
        logprobs=[0.0] * len(conv.token_ids),
        prompt_len=conv.prompt_len,
        turns=turns,
        seed=seed,
        group_id=f"oracle-{seed}",
        success=success,
        terminated=terminated,
        truncated=truncated and not terminated,
        end_reason="terminated" if terminated else ("env_truncated" if truncated else "max_turns"),
        messages=list(conv.messages),
        metadata={"policy": "oracle"},
    )


def oracle_demos(
    env: str | Callable[[], Any],
    tokenizer: Any,
    seeds: Sequence[int],
    *,
    env_kwargs: dict[str, Any] | None = None,
    only_successful: bool = True,
) -> list[Trajectory]:
    """Oracle demonstrations of ``env`` for each seed in ``seeds``.

    Args:
        env: a registered env id (made with ``env_kwargs``) or a zero-argument factory.
        tokenizer: the policy's tokenizer.
        seeds: env seeds, one demonstration each.
        env_kwargs: keyword arguments for ``agentrl.registry.make``.
        only_successful: drop episodes the oracle did not solve (e.g. a turn limit too
            small for binary search), so the model never imitates a failure.
    """
    instance = _make(env, dict(env_kwargs or {}))
    try:
        demos = [oracle_trajectory(instance, tokenizer, seed=s) for s in seeds]
    finally:
        instance.close()
    return [d for d in demos if d.success or not only_successful]
