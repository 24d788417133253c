"""A :class:`~agentrl.env.ToolEnv` with a simulated user: a multi-turn dialogue env.

:class:`DialogueEnv` opens each episode with the simulated user's first message and
answers every assistant message that has no tool call with the user's reply (through
:meth:`ToolEnv.user_reply`); the episode ends, and is graded, when the user ends the
conversation (:data:`agentrl.users.STOP`) or at ``max_turns``. The user's messages are
``user`` messages, recorded by the collector as environment tokens (never trained on).

Which user plays is chosen per env instance with ``user=``:

- ``"scripted"``: the env's :meth:`DialogueEnv.scripted_user` for the task (deterministic;
  the checker and the oracle use it).
- a policy spec (``"vllm:tiny"``, ``"openai:http://127.0.0.1:8000#model"``) or a
  :class:`~agentrl.policy.base.Policy`: a :class:`~agentrl.users.PolicyUser` prompted with
  :meth:`DialogueEnv.user_instructions`.
- ``None``: ``$AGENTRL_USER`` if set (a spec or ``scripted``), else ``default_user``.
"""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Sequence
from typing import Any, ClassVar

from agentrl.env import Episode, Message, Task, ToolEnv
from agentrl.errors import ConfigError
from agentrl.tool import Tool
from agentrl.users import PolicyUser, ScriptedUser, UserSimulator

__all__ = ["DialogueEnv", "USER_ENV_VAR", "dump_state"]

#: Environment variable naming the default simulated user (``scripted`` or a policy spec).
USER_ENV_VAR = "AGENTRL_USER"


class DialogueEnv(ToolEnv):
    """A tool env whose tasks are conversations with a simulated user.

    Subclasses implement ``sample_task``, ``grade_episode``, :meth:`scripted_user` and
    :meth:`user_instructions`. ``info["user"]`` at reset says which user plays
    (``scripted`` or ``policy``); ``info["user_stopped"]`` at the end whether the user
    ended the conversation.

    Args:
        tools: the agent's tools.
        user: ``"scripted"``, a policy spec, a Policy, or None (see the module docstring).
        user_temperature: sampling temperature of a policy-backed user.
        **kwargs: passed to :class:`ToolEnv` (``max_turns``, ``tool_format``, ...).
    """

    #: The user when ``user=None`` and ``$AGENTRL_USER`` is unset.
    default_user: ClassVar[str] = "scripted"
    #: The closing line of the system prompt (how a conversation ends).
    dialogue_instructions: ClassVar[str] = (
        "You are talking with a user. Reply to them in plain messages; call tools when you "
        "need to look something up or change something. The conversation ends when the user "
        "ends it."
    )

    def __init__(self, tools: Sequence[Tool] = (), *, user: Any = None,
                 user_temperature: float = 0.0, **kwargs: Any) -> None:
        super().__init__(tools, **kwargs)
        if user is None:
            user = os.environ.get(USER_ENV_VAR) or self.default_user
        if isinstance(user, str) and user != "scripted" and ":" not in user:
            raise ConfigError(f"user must be 'scripted', a policy spec (vllm:PATH, openai:URL#model) "
                              f"or a Policy, got {user!r}")
        self.user_spec = user
        self.user_temperature = user_temperature
        self.user: UserSimulator | None = None
        self.user_stopped = False
        self._dialogue_prompt: tuple[str, str] | None = None

    # -- to implement ---------------------------------------------------------------
    @abc.abstractmethod
    def scripted_user(self, task: Task) -> ScriptedUser:
        """The deterministic user of ``task`` (its request and hidden facts)."""

    @abc.abstractmethod
    def user_instructions(self, task: Task) -> str:
        """What a policy-backed user is told: who they are, what they want and know."""

    # -- machinery ------------------------------------------------------------------
    @property
    def user_kind(self) -> str:
        """``scripted`` or ``policy``."""
        return "scripted" if self.user_spec == "scripted" else "policy"

    def make_user(self, task: Task) -> UserSimulator:
        """The user of this episode (scripted or policy-backed, per ``user=``)."""
        if self.user_spec == "scripted":
            return self.scripted_user(task)
        return PolicyUser(self.user_spec, self.user_instructions(task),
                          temperature=self.user_temperature)

    def system_prompt(self) -> str:
        base = super().system_prompt()
        if self._dialogue_prompt is None or self._dialogue_prompt[0] != base:
            head = base.rsplit("\n\nGive your final answer inside <answer></answer>.", 1)[0]
            self._dialogue_prompt = (base, head + "\n\n" + self.dialogue_instructions)
        return self._dialogue_prompt[1]

    def _reset(self, options: dict[str, Any]) -> tuple[list[Message], dict[str, Any]]:
        messages, info = super()._reset(options)
        task = self._task()
        if self.user is not None:
            self.user.close()
        self.user = self.make_user(task)
        self.user_stopped = False
        opening = self.user.start(int(self.np_random.integers(2**31)))
        messages[-1] = {"role": "user", "content": opening}
        info["user"] = self.user_kind
        return messages, info

    def user_reply(self, task: Task, episode: Episode) -> list[Message] | None:
        if self.user is None:  # unreachable: reset makes the user
            return None
        turn = self.user.reply(episode.messages)
        if turn.stop:
            self.user_stopped = True
            return None
        return [{"role": "user", "content": turn.text}]

    def _no_call_turn(self, task: Task, text: str, info: dict[str, Any]) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        out = super()._no_call_turn(task, text, info)
        if out[2]:
            out[4]["user_stopped"] = self.user_stopped
        return out

    def close(self) -> None:
        if self.user is not None:
            self.user.close()
            self.user = None
        super().close()


def dump_state(state: Any) -> str:
    """Canonical JSON of a database state (sorted keys): equal states, equal strings."""
    return json.dumps(state, sort_keys=True, separators=(",", ":"), default=str)
