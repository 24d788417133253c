"""Environment base classes: the multi-turn chat contract on top of ``gymnasium.Env``.

:class:`AgentEnv` is the contract every agentrl environment follows (see DESIGN.md):

- ``reset(*, seed=None, options=None) -> (messages, info)``: the first messages of the
  episode (system prompt with the tool schemas, and the task). Same seed, same task.
  Envs with a finite task set list it with :meth:`AgentEnv.task_ids`, and
  ``options={"task_id": ID}`` selects one. ``info`` holds ``task_id`` (None when the env
  has no ids) and ``success`` (None).
- ``step(action) -> (messages, reward, terminated, truncated, info)``: ``action`` is the
  assistant's raw text, or an assistant message dict (which may carry OpenAI-style
  native ``tool_calls``, see :func:`agentrl.spaces.message_problem`); ``messages`` are
  what the environment adds next (tool results, the simulated user's reply); ``reward``
  is this turn's reward; ``terminated`` means the task ended (answered, solved, failed),
  ``truncated`` that a limit was hit (turns). ``info`` holds at least the keys in
  :data:`STEP_INFO_KEYS`: ``turn``, ``success`` (None until the episode ends),
  ``parsed`` and ``tool_calls``. ``agentrl check`` verifies them.

An agent's mistakes (bad JSON, unknown tool, wrong arguments) come back as messages.
Misuse of the API (``step`` before ``reset``, after the end, an action that is neither a
str nor an assistant message, an unknown task id) raises from :mod:`agentrl.errors`.

:class:`ToolEnv` builds a full tool-use environment from tools, a task source
(:meth:`ToolEnv.sample_task`) and a grader (:meth:`ToolEnv.grade`, or
:meth:`ToolEnv.grade_episode` to grade the whole episode: the calls made and their
results). :meth:`ToolEnv.user_reply` turns it into a dialogue: a simulated user answers
the assistant's plain messages instead of ending the episode.

:class:`AsyncEnv` is the optional async protocol (``areset``/``astep``/``aclose``) a
remote env implements; collectors await it directly instead of using a thread.
"""

from __future__ import annotations

import abc
import copy
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from agentrl._records import fast_init
from agentrl.errors import (
    ConfigError,
    EnvDefinitionError,
    EpisodeEndedError,
    InvalidActionError,
    ResetNeededError,
    TaskNotFoundError,
)
from agentrl.parsers import ParseResult, ToolCallParser, get_parser, parse_native_calls
from agentrl.spaces import ChatMessages, FreeText, message_problem
from agentrl.tool import Tool, ToolResult

__all__ = [
    "Message",
    "AgentEnv",
    "AsyncEnv",
    "CallRecord",
    "Episode",
    "Task",
    "ToolEnv",
    "extract_answer",
    "MAX_ACTION_CHARS",
    "STEP_INFO_KEYS",
    "RESET_INFO_KEYS",
]

#: A chat message: ``role``, ``content`` and optional ``name``/``tool_call_id``/``tool_calls``.
Message = dict[str, Any]

#: Longest action accepted (characters); longer actions get an error observation.
MAX_ACTION_CHARS = 1_000_000
#: Keys every ``step`` info holds (the env contract; ``agentrl check`` verifies them).
STEP_INFO_KEYS = ("turn", "success", "parsed", "tool_calls")
#: Keys every ``reset`` info holds. Optional: ``oracle_defect`` (a string) marks a task whose
#: benchmark ground truth fails the benchmark's own checker; ``agentrl check`` skips it.
RESET_INFO_KEYS = ("task_id", "success")

# PCG64 states of recently used seeds (a group of episodes shares a seed): building one
# costs ~2 µs, setting a known one ~1 µs.
_SEED_STATES: dict[int, dict[str, Any]] = {}
_SEED_CACHE_SIZE = 4096


def _pcg64_state(seed: int) -> dict[str, Any]:
    """The PCG64 state of ``seed``: 128-bit state and stream from BLAKE2b of the seed."""
    state = _SEED_STATES.get(seed)
    if state is None:
        digest = hashlib.blake2b(b"%d" % seed, digest_size=32, person=b"agentrl.seed").digest()
        state = {"bit_generator": "PCG64", "has_uint32": 0, "uinteger": 0,
                 "state": {"state": int.from_bytes(digest[:16], "little"),
                           "inc": int.from_bytes(digest[16:], "little") | 1}}
        if len(_SEED_STATES) >= _SEED_CACHE_SIZE:
            _SEED_STATES.pop(next(iter(_SEED_STATES)), None)  # the oldest entry
        _SEED_STATES[seed] = state
    return state


def _copy_message(m: Message) -> Message:
    """A copy the caller may mutate: str values are shared, anything else deep-copied."""
    out = m.copy()
    for v in out.values():
        if type(v) is not str:  # rare (content None, native tool_calls): copy the values
            return {k: v if type(v) is str else copy.deepcopy(v) for k, v in m.items()}
    return out


@runtime_checkable
class AsyncEnv(Protocol):
    """An environment with awaitable methods (a remote env, an env over a network).

    Collectors await these directly on their event loop when an env has them (checked
    with ``isinstance(env, AsyncEnv)``), and run the sync ``reset``/``step``/``close`` in
    a thread pool otherwise. The arguments and results are those of the sync contract.
    """

    async def areset(
        self, *, seed: int | None = None, options: Mapping[str, Any] | None = None
    ) -> tuple[list[Message], dict[str, Any]]:
        """Start an episode: the first messages and the reset info."""
        ...

    async def astep(
        self, action: str | Message
    ) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        """One assistant turn: new messages, reward, terminated, truncated, info."""
        ...

    async def aclose(self) -> None:
        """Release the env's resources (connections, sandboxes)."""
        ...


class AgentEnv(gym.Env[list[Message], str], abc.ABC):
    """Base class of agentrl environments. Subclasses implement ``_reset`` and ``_step``.

    The base class handles the API checks, keeps the conversation in ``self.messages``
    (for :meth:`render` and for people), and returns copies of the observations that the
    caller may mutate freely.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "human"], "render_fps": 4}
    #: One line shown by ``agentrl envs`` (used when ``register_env`` is given none).
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
    def task_ids(self) -> list[str] | None:
        """Ids of a finite task set, in a fixed order; None (default): tasks are generated.

        ``reset(options={"task_id": ID})`` selects a task by one of these ids.
        """
        return None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[list[Message], dict[str, Any]]:
        if seed is not None:
            self._seed(seed)
        self.turn = 0
        if not options:
            opts: dict[str, Any] = {}
        elif isinstance(options, Mapping):
            opts = dict(options)
        else:
            raise ConfigError(f"reset options must be a dict, got {type(options).__name__}")
        task_id = opts.get("task_id")
        if task_id is not None:
            self._check_task_id(task_id)
        messages, info = self._reset(opts)
        info.setdefault("task_id", task_id)
        info.setdefault("success", None)
        self.messages = list(messages)
        self._state = "running"
        if self.render_mode == "human":
            self.render()
        return list(map(_copy_message, messages)), info

    def step(
        self, action: str | Message
    ) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        if self._state != "running":
            self._raise_not_running()
        if type(action) is str or isinstance(action, str):
            self.turn += 1
            self.messages.append({"role": "assistant", "content": action})
            messages, reward, terminated, truncated, info = self._step(action)
        else:
            message = self._check_message_action(action)
            self.turn += 1
            self.messages.append(message)
            messages, reward, terminated, truncated, info = self._step_message(message)
        if "turn" not in info:
            info["turn"] = self.turn
        if "success" not in info:
            info["success"] = None
        self.messages.extend(messages)
        if terminated or truncated:
            self._state = "ended"
        if self.render_mode == "human":
            self.render()
        return (
            list(map(_copy_message, messages)),
            reward if type(reward) is float else float(reward),
            terminated is True or bool(terminated),
            truncated is True or bool(truncated),
            info,
        )

    @abc.abstractmethod
    def _reset(self, options: dict[str, Any]) -> tuple[list[Message], dict[str, Any]]:
        """Start an episode using ``self.np_random``; return the first messages and info."""

    @abc.abstractmethod
    def _step(self, action: str) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        """Apply one assistant turn (``action`` is a str, already checked)."""

    def _step_message(
        self, message: Message
    ) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        """Apply an assistant message action (already checked). Default: its text only.

        Envs that take native tool calls (:class:`ToolEnv`) override this.
        """
        return self._step(message.get("content") or "")

    def oracle_action(self) -> str:
        """A correct next action for the current state (demonstrations, tests, benchmarks)."""
        raise NotImplementedError(f"{type(self).__name__} has no oracle solver")

    @property
    def episode_over(self) -> bool:
        return self._state == "ended"

    def render(self) -> str | None:
        text = "\n".join(f"[{m['role']}] {m.get('content') or ''}" for m in self.messages)
        if self.render_mode == "human":
            print(text)
            return None
        return text

    # -- helpers --------------------------------------------------------------------
    def _seed(self, seed: int) -> None:
        """Seed ``self.np_random`` (PCG64) from ``seed``: same seed, same generator state.

        The 128-bit state and stream come from BLAKE2b of the seed (~2 µs; gymnasium's
        ``seeding.np_random`` goes through ``SeedSequence``, ~20 µs, longer than a reset).
        """
        if type(seed) is not int:
            if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
                raise ConfigError(f"seed must be a non-negative int, got {seed!r}")
            seed = int(seed)
        if seed < 0:
            raise ConfigError(f"seed must be a non-negative int, got {seed!r}")
        rng = self._np_random
        if rng is None or type(rng.bit_generator) is not np.random.PCG64:
            rng = self._np_random = np.random.Generator(np.random.PCG64(0))
        rng.bit_generator.state = _pcg64_state(seed)
        self._np_random_seed = seed

    def _check_task_id(self, task_id: Any) -> None:
        ids = self.task_ids()
        if ids is None:
            raise TaskNotFoundError(
                f"{type(self).__name__} has no fixed task list (its tasks are generated from "
                f"the seed), so options={{'task_id': {task_id!r}}} cannot select one; use a seed"
            )
        if task_id not in ids:
            shown = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
            raise TaskNotFoundError(
                f"unknown task_id {task_id!r} for {type(self).__name__}; its {len(ids)} task ids "
                f"are listed by task_ids() ({shown})"
            )

    def _raise_not_running(self) -> None:
        if self._state == "new":
            raise ResetNeededError(f"{type(self).__name__}: call reset() before step()")
        raise EpisodeEndedError(
            f"{type(self).__name__}: the episode has ended (terminated or truncated); "
            "call reset() to start a new one"
        )

    @staticmethod
    def _check_message_action(action: Any) -> Message:
        if not isinstance(action, dict):
            raise InvalidActionError(
                "the action must be the assistant's text as a str or an assistant message "
                f"dict, got {type(action).__name__}"
            )
        problem = message_problem(action, ("assistant",))
        if problem is not None:
            raise InvalidActionError(f"the action is not a valid assistant message: {problem}")
        return _copy_message(action)


@fast_init
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


@fast_init
@dataclass(frozen=True)
class CallRecord:
    """One tool call of an episode, as the env ran it."""

    turn: int
    """The assistant turn (1-based) that made the call."""
    name: str
    """Tool name the model asked for."""
    arguments: Any
    """The decoded arguments (JSON-safe), whether or not they were valid."""
    ok: bool
    """False when the call failed (unknown tool, bad arguments, tool error, too many calls)."""
    content: str
    """The text the model got back (the ``tool`` message)."""
    error_kind: str | None
    """``unknown_tool``, ``bad_arguments``, ``tool_error`` or ``too_many_calls``; None if ok."""


@fast_init
@dataclass(frozen=True)
class Episode:
    """What a grader sees of an episode at its final answer."""

    answer: str
    """The final answer, extracted from the final message (see :func:`extract_answer`)."""
    final_message: str
    """The full text of the assistant's final message."""
    calls: list[CallRecord]
    """Every tool call of the episode, in order."""
    messages: list[Message]
    """The whole conversation so far, final message included."""


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def extract_answer(text: str) -> str:
    """The final answer in an assistant message: inside ``<answer>…</answer>`` if present."""
    if "<answer>" not in text:
        return text.strip()
    found = _ANSWER_TAG.findall(text)
    return found[-1].strip() if found else text.strip()


class ToolEnv(AgentEnv):
    """A multi-turn tool-use environment built from tools, a task source and a grader.

    Each turn the assistant either calls tools (results come back as ``tool`` messages)
    or writes a message with no tool call. By default that message is the final answer
    (``<answer>…</answer>`` marks it explicitly): the episode terminates with the reward
    from :meth:`grade_episode` (which calls :meth:`grade` unless overridden). An env whose
    :meth:`user_reply` returns messages continues instead (a dialogue). Episodes are
    truncated after ``max_turns`` turns. Subclasses implement :meth:`sample_task`,
    :meth:`grade` or :meth:`grade_episode`, and, for demonstrations, :meth:`oracle_actions`.
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
        cls = type(self)
        if cls.grade is ToolEnv.grade and cls.grade_episode is ToolEnv.grade_episode:
            raise EnvDefinitionError(f"{cls.__name__} must implement grade() or grade_episode()")
        if not _is_int(max_turns) or max_turns < 1:
            raise ConfigError(f"max_turns must be an int >= 1, got {max_turns!r}")
        if not _is_int(max_calls_per_turn) or max_calls_per_turn < 1:
            raise ConfigError(f"max_calls_per_turn must be an int >= 1, got {max_calls_per_turn!r}")
        if isinstance(success_threshold, bool) or not isinstance(success_threshold, int | float):
            raise ConfigError(f"success_threshold must be a number, got {success_threshold!r}")
        for t in tools:
            if not isinstance(t, Tool):
                raise ConfigError(f"tools must be Tool objects (use @tool), got {type(t).__name__}")
        self.tools = {t.name: t for t in tools}
        if len(self.tools) != len(tools):
            raise ConfigError("tool names must be unique")
        self.parser = get_parser(tool_format)
        self.max_turns = max_turns
        self.max_calls_per_turn = max_calls_per_turn
        self.success_threshold = success_threshold
        self.task: Task | None = None
        #: Every tool call of the current episode, in order.
        self.calls: list[CallRecord] = []
        self._prompt_cache: tuple[tuple[Any, ...], str] | None = None

    # -- to implement ---------------------------------------------------------------
    @abc.abstractmethod
    def sample_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        """Draw a task with ``rng`` (seeded by ``reset``); ``options`` come from ``reset``.

        With ``options["task_id"]`` (already checked against :meth:`task_ids`), return
        that task.
        """

    def grade(self, task: Task, answer: str) -> float:
        """Reward for the final ``answer`` (already extracted from the message)."""
        raise NotImplementedError(f"{type(self).__name__} implements grade_episode, not grade")

    def grade_episode(self, task: Task, episode: Episode) -> float:
        """Reward for the whole episode; default: :meth:`grade` of the final answer.

        Override to grade the calls themselves (``episode.calls``) or the conversation.
        """
        return self.grade(task, episode.answer)

    def user_reply(self, task: Task, episode: Episode) -> list[Message] | None:
        """The simulated user's reply to an assistant message without a tool call.

        None (default) ends the episode and grades it. A list of messages (role
        ``user``) continues the episode with them; ``episode`` is the conversation so far.
        """
        return None

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
        """The system message: instructions, tool schemas, call format (built once per setup)."""
        key = (self.instructions, self.parser, *self.tools.values())
        if self._prompt_cache is not None and self._prompt_cache[0] == key:
            return self._prompt_cache[1]
        schemas = "\n".join(json.dumps(t.schema, ensure_ascii=False) for t in self.tools.values())
        parts = [self.instructions]
        if self.tools:
            parts.append("You can call these tools:\n<tools>\n" + schemas + "\n</tools>")
            parts.append(self.parser.format_instructions())
        parts.append("Give your final answer inside <answer></answer>.")
        prompt = "\n\n".join(parts)
        self._prompt_cache = (key, prompt)
        return prompt

    def _reset(self, options: dict[str, Any]) -> tuple[list[Message], dict[str, Any]]:
        self.on_episode_start()
        self.calls = []
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
        if len(action) > MAX_ACTION_CHARS:
            info = {"task_id": self._task().id, "success": None, "parsed": False,
                    "parse_errors": ["too long"], "tool_calls": [], "answer": None}
            message = self._error_message(
                f"your message is too long ({len(action)} characters; limit {MAX_ACTION_CHARS})"
            )
            return self._finish_turn([message], 0.0, False, info)
        return self._handle(action, self.parser.parse(action))

    def _step_message(
        self, message: Message
    ) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        text = message.get("content") or ""
        if "tool_calls" not in message:
            return self._step(text)
        native = parse_native_calls(message["tool_calls"])
        return self._handle(text, ParseResult(native.calls, native.errors, text.strip()))

    def _handle(
        self, text: str, parsed: ParseResult
    ) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        task = self.task or self._task()
        errors = parsed.errors
        info: dict[str, Any] = {
            "task_id": task.id, "success": None, "parsed": not errors,
            "parse_errors": [e.message for e in errors] if errors else [],
        }
        if not parsed.calls and not errors:
            return self._no_call_turn(task, text, info)
        messages: list[Message] = [
            self._error_message(f"could not parse a tool call: {e.message}") for e in errors
        ] if errors else []
        results: list[ToolResult] = []
        records = []
        reports = []
        turn = self.turn
        tools = self.tools
        for i, call in enumerate(parsed.calls):
            name = call.name
            tool = tools.get(name)
            if i >= self.max_calls_per_turn:
                result = ToolResult(name, f"Error: at most {self.max_calls_per_turn} tool calls per turn", False, "too_many_calls")
            elif tool is None:
                known = ", ".join(tools) or "(none)"
                result = ToolResult(name, f"Error: unknown tool {name!r}; available tools: {known}", False, "unknown_tool")
            else:
                result = tool.run(call.arguments)
            results.append(result)
            messages.append({"role": "tool", "name": name,
                             "tool_call_id": call.id or f"call_{turn}_{i}", "content": result.content})
            arguments = _json_copy(call.arguments)
            records.append(CallRecord(turn, name, arguments, result.ok, result.content,
                                      result.error_kind))
            reports.append({"name": name, "arguments": _json_copy(arguments), "ok": result.ok,
                            "error_kind": result.error_kind})
        self.calls.extend(records)
        info["tool_calls"] = reports
        info["answer"] = None
        return self._finish_turn(messages, self.turn_reward(parsed, results), False, info)

    def _no_call_turn(
        self, task: Task, text: str, info: dict[str, Any]
    ) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        """A message without a tool call: the final answer, or a turn of a dialogue."""
        answer = extract_answer(text)
        episode = Episode(answer, text, list(self.calls), list(self.messages))
        info["tool_calls"] = []
        info["answer"] = answer
        reply = self.user_reply(task, episode)
        if reply is not None:
            messages = list(reply)
            for m in messages:
                if (problem := message_problem(m)) is not None:
                    raise EnvDefinitionError(
                        f"{type(self).__name__}.user_reply returned an invalid message: {problem}"
                    )
            return self._finish_turn(messages, 0.0, False, info)
        reward = float(self.grade_episode(task, episode))
        info["success"] = reward >= self.success_threshold
        self.on_episode_end()
        return [], reward, True, False, info

    def _task(self) -> Task:
        if self.task is None:  # unreachable through step(): AgentEnv checks reset first
            raise ResetNeededError("call reset() before step()")
        return self.task

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


def _is_int(value: Any) -> bool:
    """An int that is not a bool (config checks)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def _json_copy(value: Any) -> Any:
    """A JSON-safe copy of ``value`` (the parsers' JSON output is copied directly; anything
    else, e.g. a tuple from a pythonic call, goes through a JSON round trip with ``repr``)."""
    kind = type(value)
    if kind in _JSON_SCALARS:
        return value
    if kind is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                return json.loads(json.dumps(value, default=repr))
            out[k] = v if type(v) in _JSON_SCALARS else _json_copy(v)
        return out
    if kind is list:
        return [v if type(v) in _JSON_SCALARS else _json_copy(v) for v in value]
    return json.loads(json.dumps(value, default=repr))
