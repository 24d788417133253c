"""Gymnasium spaces for chat environments: free text actions and chat-message observations.

:func:`message_problem` is the one definition of a valid chat message (used by
:class:`ChatMessages`, by :class:`~agentrl.env.AgentEnv` for message actions, and
available to collectors): a dict with a ``role`` from :data:`ROLES` and a ``str``
``content``; optional ``name`` and ``tool_call_id`` strings; and, on assistant messages,
OpenAI-style native ``tool_calls``::

    {"role": "assistant", "content": None,          # None allowed only with tool_calls
     "tool_calls": [{"id": "call_1", "type": "function",
                     "function": {"name": "calculator", "arguments": "{\"expression\": \"1+1\"}"}}]}

``arguments`` is a JSON string (OpenAI) or an object (Hugging Face chat templates).
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import (
    create_shared_memory,
    read_from_shared_memory,
    write_to_shared_memory,
)

from agentrl.errors import ConfigError, ObservationTooLargeError

__all__ = [
    "FreeText",
    "ChatMessages",
    "ROLES",
    "SharedChatBatch",
    "message_problem",
    "tool_call_problem",
]

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
            raise ConfigError(f"max_length must be >= 1, got {max_length}")
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


_OPTIONAL_STR = frozenset({"name", "tool_call_id"})


def tool_call_problem(call: Any) -> str | None:
    """What is wrong with one OpenAI-style ``tool_calls`` entry, or None if it is valid.

    ``{"id": str, "type": "function", "function": {"name": str, "arguments": str | dict}}``;
    ``id`` and ``type`` may be omitted (some servers leave them out).
    """
    if not isinstance(call, dict):
        return f"a tool call must be a dict, got {type(call).__name__}"
    extra = set(call) - {"id", "type", "function", "index"}
    if extra:
        return f"unexpected tool call key(s): {', '.join(sorted(map(str, extra)))}"
    if "id" in call and not isinstance(call["id"], str):
        return "a tool call's id must be a str"
    if call.get("type", "function") != "function":
        return f"a tool call's type must be 'function', got {call.get('type')!r}"
    fn = call.get("function")
    if not isinstance(fn, dict):
        return "a tool call needs a 'function' dict with 'name' and 'arguments'"
    if not isinstance(fn.get("name"), str) or not fn["name"]:
        return "a tool call's function needs a non-empty 'name' str"
    if not isinstance(fn.get("arguments", ""), str | dict):
        return "a tool call's arguments must be a JSON string or a dict"
    if set(fn) - {"name", "arguments"}:
        return f"unexpected function key(s): {', '.join(sorted(map(str, set(fn) - {'name', 'arguments'})))}"
    return None


def message_problem(m: Any, roles: Sequence[str] = ROLES) -> str | None:
    """What is wrong with chat message ``m``, or None if it is a valid message."""
    if not isinstance(m, dict):
        return f"a message must be a dict, got {type(m).__name__}"
    role = m.get("role")
    if role not in roles:
        return f"role must be one of {', '.join(roles)}, got {role!r}"
    calls = m.get("tool_calls")
    if "tool_calls" in m:
        if role != "assistant":
            return "only assistant messages may carry tool_calls"
        if not isinstance(calls, list) or not calls:
            return "tool_calls must be a non-empty list"
        for call in calls:
            if err := tool_call_problem(call):
                return err
    content = m.get("content")
    if not isinstance(content, str) and not (content is None and calls):
        return "content must be a str (None only on an assistant message with tool_calls)"
    for key in m:
        if key in ("role", "content", "tool_calls"):
            continue
        if key not in _OPTIONAL_STR:
            return f"unexpected message key {key!r}"
        if not isinstance(m[key], str):
            return f"{key} must be a str"
    return None


class ChatMessages(spaces.Space[list]):
    """A list of chat messages: dicts with a ``role`` from :data:`ROLES` and a ``str`` content.

    Optional string keys ``name`` and ``tool_call_id`` are allowed, as chat formats have them,
    and native ``tool_calls`` on assistant messages (see :func:`message_problem`).
    """

    #: Bytes of shared memory per env in ``AsyncVectorEnv(shared_memory=True)`` (the
    #: default of ``gymnasium.make_vec(..., vectorization_mode="async")``): each
    #: observation travels as UTF-8 JSON; a larger one raises ObservationTooLargeError.
    DEFAULT_SHARED_BYTES = 1 << 20

    def __init__(
        self,
        roles: Sequence[str] = ROLES,
        max_messages: int = 64,
        seed: int | np.random.Generator | None = None,
        shared_bytes: int = DEFAULT_SHARED_BYTES,
    ):
        self.roles = tuple(roles)
        self.max_messages = int(max_messages)
        if shared_bytes < 64:
            raise ConfigError(f"shared_bytes must be >= 64, got {shared_bytes}")
        self.shared_bytes = int(shared_bytes)
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
        roles = self.roles
        for m in x:
            # Fast path: the common {"role", "content"} message with plain strings.
            if type(m) is dict and len(m) == 2 and type(m.get("content")) is str:
                if m.get("role") not in roles:
                    return False
            elif message_problem(m, roles) is not None:
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


# -- async vector envs: observations through shared memory ---------------------------------
# gymnasium's AsyncVectorEnv (shared_memory=True, its default) asks each observation space
# for a shared buffer. A ChatMessages observation is variable-sized, so each env gets a
# fixed slot of ``shared_bytes``: an 8-byte length, then the messages as UTF-8 JSON.

_LEN = 8


class SharedChatBatch(Sequence):
    """The batch of observations of an async vector env, read live from shared memory.

    gymnasium reads the shared buffer once and hands out this object (``copy=False``) or a
    deep copy of it (``copy=True``, the default: a plain tuple of message lists).
    """

    def __init__(self, buffer: Any, n: int, slot: int) -> None:
        self._bytes = np.frombuffer(buffer.get_obj(), dtype=np.uint8)
        self._n, self._slot = n, slot

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(self._n)))
        if not -self._n <= index < self._n:
            raise IndexError(index)
        start = (index % self._n) * self._slot
        size = int.from_bytes(self._bytes[start : start + _LEN].tobytes(), "little")
        if size == 0:
            return []
        return json.loads(self._bytes[start + _LEN : start + _LEN + size].tobytes().decode())

    def __deepcopy__(self, memo: dict[int, Any]) -> tuple[list[dict[str, Any]], ...]:
        return tuple(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __repr__(self) -> str:
        return repr(tuple(self))


@create_shared_memory.register(ChatMessages)
def _create_chat_shared_memory(space: ChatMessages, n: int = 1, ctx: ModuleType | None = None) -> Any:
    import multiprocessing

    return (ctx or multiprocessing).Array("B", n * space.shared_bytes)


@read_from_shared_memory.register(ChatMessages)
def _read_chat_shared_memory(space: ChatMessages, shared_memory: Any, n: int = 1) -> SharedChatBatch:
    return SharedChatBatch(shared_memory, n, space.shared_bytes)


@write_to_shared_memory.register(ChatMessages)
def _write_chat_shared_memory(space: ChatMessages, index: int, value: Any, shared_memory: Any) -> None:
    data = json.dumps(value, ensure_ascii=False).encode()
    if len(data) + _LEN > space.shared_bytes:
        raise ObservationTooLargeError(
            f"an observation of {len(data)} bytes does not fit in the async vector env's "
            f"shared memory slot ({space.shared_bytes} bytes): raise the env's "
            "observation_space.shared_bytes or pass shared_memory=False (vector_kwargs="
            "{'shared_memory': False} in gymnasium.make_vec)"
        )
    dest = np.frombuffer(shared_memory.get_obj(), dtype=np.uint8)
    start = index * space.shared_bytes
    dest[start : start + _LEN] = np.frombuffer(len(data).to_bytes(_LEN, "little"), dtype=np.uint8)
    dest[start + _LEN : start + _LEN + len(data)] = np.frombuffer(data, dtype=np.uint8)
