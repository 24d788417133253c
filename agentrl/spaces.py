"""Gymnasium spaces for chat environments: free text actions and chat-message observations."""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

__all__ = ["FreeText", "ChatMessages", "ROLES"]

#: Roles an environment may emit.
ROLES = ("system", "user", "assistant", "tool")

# Sampled actions mix prose with tool-call syntax so random rollouts exercise the parsers.
_SAMPLE_PIECES = (
    "hello", "the answer is", " ", "\n", "{", "}", "[", "]", '"', ":", ",", "(", ")", "=",
    "<tool_call>", "</tool_call>", '{"name": "calculator", "arguments": {"expression": "1+1"}}',
    "42", "-7.5", "null", "true", "é", "数", "\\",
)


class FreeText(spaces.Space[str]):
    """Any Python ``str`` of at most ``max_length`` characters (the assistant's raw text).

    Unlike :class:`gymnasium.spaces.Text`, every Unicode character is allowed: an assistant
    message can hold JSON, code and any language.
    """

    def __init__(self, max_length: int = 1_000_000, seed: int | np.random.Generator | None = None):
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.max_length = int(max_length)
        super().__init__(dtype=str, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        n = int(self.np_random.integers(0, 12))
        parts = [
            _SAMPLE_PIECES[int(i)]
            if self.np_random.random() < 0.7
            else string.printable[int(i) % len(string.printable)]
            for i in self.np_random.integers(0, len(_SAMPLE_PIECES), size=n)
        ]
        return "".join(parts)[: self.max_length]

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"FreeText(max_length={self.max_length})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FreeText) and other.max_length == self.max_length


class ChatMessages(spaces.Space[list]):
    """A list of chat messages: dicts with a ``role`` from :data:`ROLES` and a ``str`` content.

    Optional string keys ``name`` and ``tool_call_id`` are allowed, as chat formats have them.
    """

    _OPTIONAL = frozenset({"name", "tool_call_id"})

    def __init__(
        self,
        roles: Sequence[str] = ROLES,
        max_messages: int = 64,
        seed: int | np.random.Generator | None = None,
    ):
        self.roles = tuple(roles)
        self.max_messages = int(max_messages)
        super().__init__(dtype=object, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> list[dict[str, str]]:
        n = int(self.np_random.integers(1, 4))
        return [
            {
                "role": self.roles[int(self.np_random.integers(len(self.roles)))],
                "content": f"message {int(self.np_random.integers(1000))}",
            }
            for _ in range(n)
        ]

    def contains(self, x: Any) -> bool:
        if not isinstance(x, list) or len(x) > self.max_messages:
            return False
        for m in x:
            if not isinstance(m, dict) or m.get("role") not in self.roles:
                return False
            if not isinstance(m.get("content"), str):
                return False
            extra = set(m) - {"role", "content"}
            if not extra <= self._OPTIONAL or not all(isinstance(m[k], str) for k in extra):
                return False
        return True

    def __repr__(self) -> str:
        return f"ChatMessages(roles={self.roles}, max_messages={self.max_messages})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ChatMessages)
            and other.roles == self.roles
            and other.max_messages == self.max_messages
        )
