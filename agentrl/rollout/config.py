"""Limits and sampling settings of the rollout collector."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentrl.errors import ConfigError
from agentrl.policy.base import SamplingParams

__all__ = ["RolloutConfig"]


@dataclass(frozen=True)
class RolloutConfig:
    """How :func:`agentrl.rollout.collect` runs episodes. Every limit is recorded when hit."""

    max_turns: int = 8
    """Most assistant turns per episode; reaching it ends the episode (``max_turns``)."""
    max_new_tokens: int = 256
    """Most tokens the model may generate in one turn."""
    max_context: int = 4096
    """Most tokens in a whole episode (prompt, turns, env messages); ``max_context``."""
    temperature: float = 1.0
    """Sampling temperature (0 = greedy)."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    stop: tuple[str, ...] = ()
    """Extra stop strings (the end-of-turn token always stops generation)."""
    seed: int | None = None
    """Base sampling seed: turn ``t`` of episode ``k`` samples with ``seed + k * max_turns + t``."""
    group_size: int = 1
    """Episodes per env seed; they share ``group_id`` and ``seed`` (GRPO-style groups)."""
    concurrency: int = 32
    """Most episodes in flight at once (also the env thread-pool size)."""
    truncate_on_length: bool = True
    """A turn that hits ``max_new_tokens`` ends the episode (``max_new_tokens``); if False
    the cut-off text is closed, passed to the env, and the episode goes on."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for ``agentrl.registry.make(env_id, **env_kwargs)``."""

    def __post_init__(self) -> None:
        for name in ("max_turns", "max_new_tokens", "max_context", "group_size", "concurrency"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"RolloutConfig.{name} must be an int >= 1, got {value!r}")
        if self.max_new_tokens >= self.max_context:
            raise ConfigError(
                f"max_new_tokens ({self.max_new_tokens}) must be smaller than max_context "
                f"({self.max_context}): the prompt needs room too"
            )
        if not isinstance(self.env_kwargs, dict):
            raise ConfigError(f"env_kwargs must be a dict, got {type(self.env_kwargs).__name__}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigError(f"seed must be an int or None, got {self.seed!r}")
        for name in ("temperature", "top_p"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"RolloutConfig.{name} must be a number, got {value!r}")
        if isinstance(self.stop, str) or not isinstance(self.stop, tuple | list):
            raise ConfigError(
                f"RolloutConfig.stop must be a tuple of strings, got {self.stop!r} "
                "(a single string: stop=('</answer>',))"
            )
        self.sampling(0)  # validates temperature, top_p and stop with SamplingParams' checks

    def sampling(self, episode: int, turn: int = 0, max_tokens: int | None = None) -> SamplingParams:
        """Sampling parameters of turn ``turn`` of episode number ``episode``."""
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_new_tokens if max_tokens is None else max_tokens,
            stop=tuple(self.stop),
            seed=None if self.seed is None else self.seed + episode * self.max_turns + turn,
            n=1,
        )
