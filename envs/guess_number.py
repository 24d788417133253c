"""``agentrl/GuessNumber-v0``: guess a secret number with higher/lower feedback each turn.

The simplest test of turn-level credit assignment: every turn has its own reward.
Per turn: +1 for the correct guess (episode terminates, success); otherwise -0.1 for a
guess outside the range still consistent with the feedback so far (a wasted turn) and
0 for a consistent guess; -0.2 when no integer guess can be read. Truncated after
``max_turns`` turns.
"""

from __future__ import annotations

import re
from typing import Any

from agentrl.env import AgentEnv, Message, extract_answer
from agentrl.errors import ConfigError

__all__ = ["GuessNumberEnv"]

_INT = re.compile(r"-?\d+")


class GuessNumberEnv(AgentEnv):
    """Guess the secret integer in [low, high]; the user answers higher/lower."""

    description = "Guess a secret number in [1, N] from higher/lower feedback (per-turn rewards)."

    def __init__(self, low: int = 1, high: int = 100, max_turns: int = 10, render_mode: str | None = None):
        super().__init__(render_mode=render_mode)
        for name, value in (("low", low), ("high", high), ("max_turns", max_turns)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an int, got {value!r}")
        if high <= low:
            raise ConfigError(f"high ({high}) must be greater than low ({low})")
        if max_turns < 1:
            raise ConfigError(f"max_turns must be >= 1, got {max_turns}")
        self.low, self.high, self.max_turns = low, high, max_turns
        self.secret = low
        self.lo = low  # the range still consistent with the feedback so far
        self.hi = high

    def _reset(self, options: dict[str, Any]) -> tuple[list[Message], dict[str, Any]]:
        self.secret = int(self.np_random.integers(self.low, self.high + 1))
        self.lo, self.hi = self.low, self.high
        return [
            {"role": "system", "content": (
                "You are playing a guessing game. Each turn, reply with one integer guess "
                "inside <answer></answer>. The user tells you whether the secret is higher or "
                "lower.")},
            {"role": "user", "content": (
                f"I am thinking of an integer between {self.low} and {self.high}. "
                f"You have {self.max_turns} guesses. What is your first guess?")},
        ], {"task_id": f"guess-{self.low}-{self.high}-{self.secret}", "success": None}

    def _step(self, action: str) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        found = _INT.findall(extract_answer(action)[-1000:])
        info: dict[str, Any] = {"parsed": bool(found), "tool_calls": [], "success": None}
        if not found:
            reward, reply, done = -0.2, "I could not read a guess. Reply with one integer inside <answer></answer>.", False
        else:
            guess = int(found[-1]) if len(found[-1]) < 30 else self.high + 1
            info["guess"] = guess
            consistent = self.lo <= guess <= self.hi
            if guess == self.secret:
                reward, reply, done = 1.0, f"Correct! The number was {self.secret}.", True
            else:
                reward = 0.0 if consistent else -0.1
                if guess < self.secret:
                    self.lo = max(self.lo, guess + 1)
                    reply = f"{guess} is too low. The secret is higher."
                else:
                    self.hi = min(self.hi, guess - 1)
                    reply = f"{guess} is too high. The secret is lower."
                done = False
        truncated = not done and self.turn >= self.max_turns
        if done or truncated:
            info["success"] = done
        if truncated:
            reply += f" Out of guesses: the number was {self.secret}."
        return [{"role": "user", "content": reply}], reward, done, truncated, info

    def oracle_action(self) -> str:
        """Binary search over the range consistent with the feedback so far."""
        return f"<answer>{(self.lo + self.hi) // 2}</answer>"
