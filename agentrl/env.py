"""Environment base classes: the multi-turn chat contract on top of ``gymnasium.Env``.

:class:`AgentEnv` is the contract every agentrl environment follows (see DESIGN.md):

- ``reset(*, seed=None, options=None) -> (messages, info)``: the first messages of the
  episode (system prompt with the tool schemas, and the task). Same seed, same task.
- ``step(action: str) -> (messages, reward, terminated, truncated, info)``: ``action`` is
  the assistant's raw text; ``messages`` are what the environment adds next (tool
  results, the simulated user's reply); ``reward`` is this turn's reward;
  ``terminated`` means the task ended (answered, solved, failed), ``truncated`` that a
  limit was hit (turns). ``info`` holds at least ``parsed``, ``tool_calls``, ``turn`` and
  ``success`` (``None`` until the episode ends).

An agent's mistakes (bad JSON, unknown tool, wrong arguments) come back as messages.
Misuse of the API (``step`` before ``reset``, after the end, a non-string action) raises
from :mod:`agentrl.errors`.

:class:`ToolEnv` builds a full tool-use environment from tools, a task source
(:meth:`ToolEnv.sample_task`) and a grader (:meth:`ToolEnv.grade`).
"""

from __future__ import annotations

import abc
import copy
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from agentrl.errors import ConfigError, EpisodeEndedError, InvalidActionError, ResetNeededError
from agentrl.parsers import ParseResult, ToolCallParser, get_parser
from agentrl.spaces import ChatMessages, FreeText
from agentrl.tool import Tool, ToolResult

__all__ = ["Message", "AgentEnv", "Task", "ToolEnv", "extract_answer", "MAX_ACTION_CHARS"]

Message = dict[str, str]

#: Longest action accepted (characters); longer actions get an error observation.
MAX_ACTION_CHARS = 1_000_000


class AgentEnv(gym.Env[list[Message], str], abc.ABC):
    """Base class of agentrl environments. Subclasses implement ``_reset`` and ``_step``.

    The base class handles the API checks, keeps the conversation in ``self.messages``
    (for :meth:`render` and for people), and returns fresh copies of every observation.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "human"], "render_fps": 4}
    #: One line shown by ``agentrl envs``.
    description: ClassVar[str] = ""

    def __init__(self, render_mode: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(
                f"render_mode {render_mode!r} is not supported; use one of {self.metadata['render_modes']}"
            )
        self.render_mode = render_mode
        self.observation_space = ChatMessages()
        self.action_space = FreeText(MAX_ACTION_CHARS)
        self.messages: list[Message] = []
        self.turn = 0
        self._state = "new"  # new -> running -> ended

    # -- the contract ---------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[list[Message], dict[str, Any]]:
        super().reset(seed=seed)
        self.turn = 0
        messages, info = self._reset(dict(options or {}))
        self.messages = copy.deepcopy(messages)
        self._state = "running"
        if self.render_mode == "human":
            self.render()
        return copy.deepcopy(messages), info

    def step(self, action: str) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        if self._state == "new":
            raise ResetNeededError(f"{type(self).__name__}: call reset() before step()")
        if self._state == "ended":
            raise EpisodeEndedError(
                f"{type(self).__name__}: the episode has ended (terminated or truncated); "
                "call reset() to start a new one"
            )
        if not isinstance(action, str):
            raise InvalidActionError(
                f"the action must be the assistant's text as a str, got {type(action).__name__}"
            )
        self.turn += 1
        self.messages.append({"role": "assistant", "content": action})
        messages, reward, terminated, truncated, info = self._step(action)
        info.setdefault("turn", self.turn)
        info.setdefault("success", None)
        self.messages.extend(copy.deepcopy(messages))
        if terminated or truncated:
            self._state = "ended"
        if self.render_mode == "human":
            self.render()
        return copy.deepcopy(messages), float(reward), bool(terminated), bool(truncated), info

    @abc.abstractmethod
    def _reset(self, options: dict[str, Any]) -> tuple[list[Message], dict[str, Any]]:
        """Start an episode using ``self.np_random``; return the first messages and info."""

    @abc.abstractmethod
    def _step(self, action: str) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        """Apply one assistant turn (``action`` is a str, already checked)."""

    def oracle_action(self) -> str:
        """A correct next action for the current state (demonstrations, tests, benchmarks)."""
        raise NotImplementedError(f"{type(self).__name__} has no oracle solver")

    @property
    def episode_over(self) -> bool:
        return self._state == "ended"

    def render(self) -> str | None:
        text = "\n".join(f"[{m['role']}] {m['content']}" for m in self.messages)
        if self.render_mode == "human":
            print(text)
            return None
        return text


@dataclass(frozen=True)
class Task:
    """One task of a :class:`ToolEnv`."""

    prompt: str
    """The user message stating the task."""
    answer: Any
    """The reference answer the grader compares against (never shown to the agent)."""
    id: str = ""
    """Stable identifier (for reports and grouping)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Extra data the env's grader or oracle needs."""


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def extract_answer(text: str) -> str:
    """The final answer in an assistant message: inside ``<answer>…</answer>`` if present."""
    found = _ANSWER_TAG.findall(text)
    return found[-1].strip() if found else text.strip()


class ToolEnv(AgentEnv):
    """A multi-turn tool-use environment built from tools, a task source and a grader.

    Each turn the assistant either calls tools (results come back as ``tool`` messages)
    or gives a final answer (a message with no tool call; ``<answer>…</answer>`` marks it
    explicitly). The episode terminates on the final answer, whose reward comes from
    :meth:`grade`, and is truncated after ``max_turns`` turns. Subclasses implement
    :meth:`sample_task`, :meth:`grade` and, for demonstrations, :meth:`oracle_actions`.
    """

    #: Instructions placed before the tool list in the system prompt.
    instructions: ClassVar[str] = "You are a helpful assistant that solves tasks with tools."

    def __init__(
        self,
        tools: Sequence[Tool] = (),
        *,
        max_turns: int = 8,
        tool_format: str | ToolCallParser = "hermes",
        max_calls_per_turn: int = 8,
        success_threshold: float = 1.0,
        render_mode: str | None = None,
    ):
        super().__init__(render_mode=render_mode)
        if max_turns < 1:
            raise ConfigError(f"max_turns must be >= 1, got {max_turns}")
        if max_calls_per_turn < 1:
            raise ConfigError(f"max_calls_per_turn must be >= 1, got {max_calls_per_turn}")
        self.tools = {t.name: t for t in tools}
        if len(self.tools) != len(tools):
            raise ConfigError("tool names must be unique")
        self.parser = get_parser(tool_format)
        self.max_turns = max_turns
        self.max_calls_per_turn = max_calls_per_turn
        self.success_threshold = success_threshold
        self.task: Task | None = None

    # -- to implement ---------------------------------------------------------------
    @abc.abstractmethod
    def sample_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        """Draw a task with ``rng`` (seeded by ``reset``); ``options`` come from ``reset``."""

    @abc.abstractmethod
    def grade(self, task: Task, answer: str) -> float:
        """Reward for the final ``answer`` (already extracted from the message)."""

    def oracle_actions(self, task: Task) -> list[str]:
        """The assistant messages of a correct solution, in order (tool calls, then answer)."""
        raise NotImplementedError(f"{type(self).__name__} has no oracle solver")

    def turn_reward(self, parsed: ParseResult, results: list[ToolResult]) -> float:
        """Shaping reward for a tool-calling turn (default 0)."""
        return 0.0

    def on_episode_start(self) -> None:
        """Hook called at each reset before the task is drawn (e.g. start a sandbox session)."""

    def on_episode_end(self) -> None:
        """Hook called when the episode terminates or is truncated (release resources)."""

    # -- machinery ------------------------------------------------------------------
    def system_prompt(self) -> str:
        schemas = "\n".join(json.dumps(t.schema, ensure_ascii=False) for t in self.tools.values())
        parts = [self.instructions]
        if self.tools:
            parts.append("You can call these tools:\n<tools>\n" + schemas + "\n</tools>")
            parts.append(self.parser.format_instructions())
        parts.append("Give your final answer inside <answer></answer>.")
        return "\n\n".join(parts)

    def _reset(self, options: dict[str, Any]) -> tuple[list[Message], dict[str, Any]]:
        self.on_episode_start()
        self.task = self.sample_task(self.np_random, options)
        messages = [
            {"role": "system", "content": self.system_prompt()},
            {"role": "user", "content": self.task.prompt},
        ]
        return messages, {"task_id": self.task.id, "success": None}

    def oracle_action(self) -> str:
        if self.task is None:
            raise ResetNeededError("call reset() before asking the oracle")
        plan = self.oracle_actions(self.task)
        return plan[min(self.turn, len(plan) - 1)]

    def _step(self, action: str) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        assert self.task is not None  # guaranteed by AgentEnv.step's state check
        info: dict[str, Any] = {"task_id": self.task.id, "success": None}
        if len(action) > MAX_ACTION_CHARS:
            parsed = ParseResult()
            messages = [self._error_message(f"your message is too long ({len(action)} characters; limit {MAX_ACTION_CHARS})")]
            info.update(parsed=False, tool_calls=[], answer=None)
            return self._finish_turn(messages, 0.0, False, info)
        parsed = self.parser.parse(action)
        info["parsed"] = parsed.ok
        info["parse_errors"] = [e.message for e in parsed.errors]
        if not parsed.calls and not parsed.errors:
            answer = extract_answer(action)
            reward = float(self.grade(self.task, answer))
            info.update(tool_calls=[], answer=answer, success=reward >= self.success_threshold)
            self.on_episode_end()
            return [], reward, True, False, info
        messages: list[Message] = [self._error_message(f"could not parse a tool call: {e.message}") for e in parsed.errors]
        results: list[ToolResult] = []
        for i, call in enumerate(parsed.calls):
            call_id = f"call_{self.turn}_{i}"
            if i >= self.max_calls_per_turn:
                result = ToolResult(call.name, f"Error: at most {self.max_calls_per_turn} tool calls per turn", False, "too_many_calls")
            elif call.name not in self.tools:
                known = ", ".join(self.tools) or "(none)"
                result = ToolResult(call.name, f"Error: unknown tool {call.name!r}; available tools: {known}", False, "unknown_tool")
            else:
                result = self.tools[call.name].run(call.arguments)
            results.append(result)
            messages.append({"role": "tool", "name": call.name, "tool_call_id": call_id, "content": result.content})
        info["tool_calls"] = [
            {"name": r.name, "arguments": _json_safe(c.arguments), "ok": r.ok, "error_kind": r.error_kind}
            for c, r in zip(parsed.calls, results, strict=True)
        ]
        info["answer"] = None
        return self._finish_turn(messages, self.turn_reward(parsed, results), False, info)

    def _finish_turn(
        self, messages: list[Message], reward: float, terminated: bool, info: dict[str, Any]
    ) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        truncated = not terminated and self.turn >= self.max_turns
        if truncated:
            info["success"] = False
            self.on_episode_end()
        return messages, reward, terminated, truncated, info

    @staticmethod
    def _error_message(text: str) -> Message:
        return {"role": "tool", "name": "error", "content": f"Error: {text}"}

    def close(self) -> None:
        self.on_episode_end()
        super().close()


def _json_safe(value: Any) -> Any:
    """Round-trip through JSON so ``info`` never holds objects a JSONL writer would choke on."""
    return json.loads(json.dumps(value, default=repr))
