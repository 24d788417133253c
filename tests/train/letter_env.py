"""A trivially learnable one-turn toy env for training tests, registered per test module.

Reward = share of the reply's characters that are ``letter``: any random model earns some,
and a few GRPO steps raise it, so "reward goes up" checks the whole training chain.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from agentrl.env import AgentEnv, Message


class LetterEnv(AgentEnv):
    """One turn; reward = share of the reply's characters that are ``letter``."""

    description = "test toy: write one letter many times"

    def __init__(self, letter: str, prompt: str, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        self.letter, self.prompt = letter, prompt

    def _reset(self, options: dict[str, Any]) -> tuple[list[Message], dict[str, Any]]:
        n = int(self.np_random.integers(1000))
        return [{"role": "user", "content": f"{self.prompt} ({n})"}], {
            "task_id": f"{self.letter}-{n}", "success": None}

    def _step(self, action: str) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        share = action.count(self.letter) / max(len(action), 1)
        return [], share, True, False, {"parsed": True, "tool_calls": [], "success": share > 0.5}

    def oracle_action(self) -> str:
        return self.letter * 8


def register_letter_env(env_id: str, letter: str, prompt: str) -> str:
    """Register ``env_id`` (once) as a LetterEnv with this letter and prompt; return the id."""
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=LetterEnv, kwargs={"letter": letter, "prompt": prompt})
    return env_id
