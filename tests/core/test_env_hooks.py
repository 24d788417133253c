"""Env seams: task ids, the episode a grader sees, the dialogue hook, native tool calls,
the AsyncEnv protocol, and SessionToolEnv's new home."""

from __future__ import annotations

import json
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from agentrl import Task, ToolEnv, tool
from agentrl.env import AgentEnv, AsyncEnv, CallRecord, Episode
from agentrl.errors import (
    ConfigError,
    EnvDefinitionError,
    InvalidActionError,
    TaskNotFoundError,
)
from agentrl.spaces import ChatMessages, message_problem


@tool
def lookup(key: str) -> str:
    """Look a word up in a tiny dictionary.

    Args:
        key: The word.
    """
    return {"sky": "blue", "grass": "green"}.get(key, "unknown")


class Finite(ToolEnv):
    """Three fixed tasks, selectable by id; graded on the calls made (grade_episode)."""

    WORDS = ("sky", "grass", "sea")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__([lookup], **kwargs)
        self.seen: list[Episode] = []

    def task_ids(self) -> list[str]:
        return [f"word-{w}" for w in self.WORDS]

    def sample_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        ids = self.task_ids()
        tid = options.get("task_id") or ids[int(rng.integers(len(ids)))]
        word = tid.removeprefix("word-")
        return Task(prompt=f"What colour is the {word}?", answer=word, id=tid)

    def grade_episode(self, task: Task, episode: Episode) -> float:
        self.seen.append(episode)
        looked_up = any(c.ok and c.name == "lookup" and c.arguments == {"key": task.answer}
                        for c in episode.calls)
        return 1.0 if looked_up else 0.0


def call(name: str, **arguments: Any) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


# -- task ids ------------------------------------------------------------------------

def test_generated_envs_have_no_task_ids_and_report_a_task_id():
    for env_id in ("agentrl/Calculator-v0", "agentrl/GuessNumber-v0"):
        env = gym.make(env_id).unwrapped
        assert env.task_ids() is None
        _, info = env.reset(seed=3)
        assert isinstance(info["task_id"], str) and info["task_id"]
        assert info["success"] is None
        with pytest.raises(TaskNotFoundError, match="no fixed task list"):
            env.reset(options={"task_id": info["task_id"]})
        env.close()


def test_task_id_selects_the_task_and_unknown_ids_are_clear_errors():
    env = Finite()
    for tid in env.task_ids():
        messages, info = env.reset(seed=0, options={"task_id": tid})
        assert info["task_id"] == tid
        assert tid.removeprefix("word-") in messages[-1]["content"]
    with pytest.raises(TaskNotFoundError, match="unknown task_id 'word-moon'.*3 task ids") as err:
        env.reset(options={"task_id": "word-moon"})
    assert isinstance(err.value, ConfigError)  # and so a ValueError, as before


# -- the episode a grader sees ----------------------------------------------------------

def test_grade_episode_sees_every_call_with_results_and_turns():
    env = Finite(max_turns=5)
    env.reset(options={"task_id": "word-sky"})
    env.step(call("nope", key="sky") + call("lookup", word="sky"))  # unknown tool, bad args
    env.step(call("lookup", key="sky"))
    _, reward, terminated, _, info = env.step("It is <answer>blue</answer>.")
    assert terminated and reward == 1.0 and info["success"] is True
    (episode,) = env.seen
    assert episode.answer == "blue" and episode.final_message == "It is <answer>blue</answer>."
    assert [(c.turn, c.name, c.ok, c.error_kind) for c in episode.calls] == [
        (1, "nope", False, "unknown_tool"),
        (1, "lookup", False, "bad_arguments"),
        (2, "lookup", True, None),
    ]
    assert episode.calls[2] == CallRecord(2, "lookup", {"key": "sky"}, True, "blue", None)
    assert "missing required argument(s): key" in episode.calls[1].content
    assert episode.messages[-1] == {"role": "assistant", "content": "It is <answer>blue</answer>."}
    assert episode.messages == env.messages
    # a new episode starts with no calls
    env.reset(options={"task_id": "word-grass"})
    assert env.calls == []
    _, reward, *_ = env.step("<answer>green</answer>")
    assert reward == 0.0 and env.seen[-1].calls == []


def test_grade_default_delegates_to_grade_and_an_env_needs_one_of_them():
    class Plain(ToolEnv):
        def sample_task(self, rng, options):
            return Task("say hi", "hi", id="hi")

        def grade(self, task, answer):
            return 1.0 if answer == task.answer else 0.5

    env = Plain()
    env.reset()
    assert env.step("<answer>hi</answer>")[1] == 1.0
    env.reset()
    assert env.step("hello")[1] == 0.5

    class NoGrader(ToolEnv):
        def sample_task(self, rng, options):
            return Task("x", None)

    with pytest.raises(EnvDefinitionError, match="grade"):
        NoGrader()


def test_pythonic_arguments_are_recorded_json_safe():
    env = Finite(tool_format="pythonic")
    env.reset(options={"task_id": "word-sky"})
    _, _, _, _, info = env.step("[lookup(key=('s', 'k'))]")
    assert info["tool_calls"][0]["arguments"] == {"key": ["s", "k"]}
    assert env.calls[0].error_kind == "bad_arguments"
    json.dumps(info)


# -- dialogue hook -------------------------------------------------------------------

COLOURS = ("red", "teal", "amber")


class AskTheUser(ToolEnv):
    """A scripted user knows a colour; the assistant asks, then answers (no tools)."""

    instructions = "Find out the user's favourite colour."

    def sample_task(self, rng, options):
        colour = COLOURS[int(rng.integers(len(COLOURS)))]
        return Task("Guess my favourite colour. You may ask me.", colour, id=f"colour-{colour}")

    def user_reply(self, task, episode):
        if "<answer>" in episode.final_message:
            return None
        if "colour" in episode.final_message:
            return [{"role": "user", "content": f"It is {task.answer}."}]
        return [{"role": "user", "content": "Ask me about my colour, or answer."}]

    def grade(self, task, answer):
        return 1.0 if answer == task.answer else 0.0


def test_user_reply_continues_the_episode_until_the_answer():
    env = AskTheUser(max_turns=4)
    env.reset(seed=1)
    secret = env.task.answer
    messages, reward, terminated, truncated, info = env.step("Hello?")
    assert messages == [{"role": "user", "content": "Ask me about my colour, or answer."}]
    assert (reward, terminated, truncated, info["tool_calls"]) == (0.0, False, False, [])
    messages, *_ = env.step("What is your favourite colour?")
    assert messages[0]["content"] == f"It is {secret}."
    _, reward, terminated, _, info = env.step(f"<answer>{secret}</answer>")
    assert terminated and reward == 1.0 and info["success"] is True and info["turn"] == 3


def test_user_reply_respects_max_turns_and_checks_its_messages():
    env = AskTheUser(max_turns=2)
    env.reset(seed=1)
    env.step("hm")
    _, _, terminated, truncated, info = env.step("hm")
    assert truncated and not terminated and info["success"] is False

    class Broken(AskTheUser):
        def user_reply(self, task, episode):
            return [{"role": "narrator", "content": "x"}]

    broken = Broken()
    broken.reset(seed=0)
    with pytest.raises(EnvDefinitionError, match="user_reply returned an invalid message"):
        broken.step("hi")


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model_path: Any) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


def test_dialogue_env_runs_through_the_collector(tiny_tokenizer):
    from agentrl.policy.fake import FakePolicy
    from agentrl.rollout import RolloutConfig, collect_sync

    def agent(prompt: str) -> str:  # asks once, then answers what the user said
        for colour in COLOURS:
            if f"It is {colour}." in prompt:
                return f"<answer>{colour}</answer>"
        return "What is your favourite colour?"

    policy = FakePolicy(tiny_tokenizer, agent)
    trajs = collect_sync(lambda: AskTheUser(max_turns=4), policy, [0, 1, 2, 3],
                         RolloutConfig(max_turns=4))
    assert [t.end_reason for t in trajs] == ["terminated"] * 4
    assert all(t.success is True and len(t.turns) == 2 for t in trajs)
    assert [t.turns[-1].reward for t in trajs] == [1.0] * 4
    assert all(t.messages[2]["content"] == "What is your favourite colour?" for t in trajs)
    assert all(t.messages[3]["role"] == "user" and t.messages[3]["content"].startswith("It is")
               for t in trajs)


# -- native tool calls -------------------------------------------------------------

def native(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_messages_with_native_tool_calls_are_valid_chat_messages():
    msg = {"role": "assistant", "content": None,
           "tool_calls": [native("c1", "lookup", '{"key": "sky"}')]}
    assert message_problem(msg) is None
    assert [msg] in ChatMessages()
    assert [msg, {"role": "tool", "tool_call_id": "c1", "content": "blue"}] in ChatMessages()
    bad = [
        ({**msg, "role": "user"}, "only assistant"),
        ({**msg, "tool_calls": []}, "non-empty"),
        ({**msg, "tool_calls": [{"function": {"arguments": "{}"}}]}, "name"),
        ({**msg, "tool_calls": [native("c1", "f", 3)]}, "arguments"),
        ({**msg, "tool_calls": [{**native("c1", "f", "{}"), "type": "code"}]}, "type"),
        ({"role": "assistant", "content": None}, "content must be a str"),
        ({"role": "assistant", "content": "x", "extra": 1}, "unexpected message key"),
    ]
    for m, why in bad:
        assert why in (message_problem(m) or ""), m
        assert [m] not in ChatMessages()


def test_tool_env_takes_a_message_with_native_tool_calls():
    env = Finite()
    env.reset(options={"task_id": "word-sky"})
    action = {"role": "assistant", "content": "",
              "tool_calls": [native("abc", "lookup", '{"key": "sky"}'),
                             native("def", "lookup", {"key": "sea"}),
                             native("ghi", "lookup", "{not json")]}
    messages, _, terminated, _, info = env.step(action)
    assert not terminated and info["parsed"] is False
    assert "arguments of 'lookup': invalid JSON" in messages[0]["content"]
    assert [(m["tool_call_id"], m["content"]) for m in messages[1:]] == [("abc", "blue"), ("def", "unknown")]
    assert [c.arguments for c in env.calls] == [{"key": "sky"}, {"key": "sea"}]
    assert env.messages[2] == action and env.messages[2] is not action  # recorded as given
    assert env.messages in ChatMessages()
    # a plain assistant message dict is the same as its text
    _, reward, terminated, _, _ = env.step({"role": "assistant", "content": "<answer>blue</answer>"})
    assert terminated and reward == 1.0


def test_malformed_message_actions_raise_invalid_action():
    env = Finite()
    env.reset(seed=0)
    for action in ({"role": "user", "content": "hi"}, {"content": "hi"},
                   {"role": "assistant", "content": 5}, ["hi"]):
        with pytest.raises(InvalidActionError):
            env.step(action)  # type: ignore[arg-type]
    assert env.turn == 0


def test_non_tool_env_reads_the_text_of_a_message_action():
    env = gym.make("agentrl/GuessNumber-v0").unwrapped
    env.reset(seed=0)
    _, _, _, _, info = env.step({"role": "assistant", "content": "<answer>50</answer>"})
    assert info["guess"] == 50


# -- async protocol, session env home ------------------------------------------------

def test_async_env_protocol_is_structural():
    class Remote:
        async def areset(self, *, seed=None, options=None):
            return [{"role": "user", "content": "hi"}], {}

        async def astep(self, action):
            return [], 1.0, True, False, {}

        async def aclose(self):
            return None

    assert isinstance(Remote(), AsyncEnv)
    assert not isinstance(Finite(), AsyncEnv)  # sync envs run in the collector's threads
    assert issubclass(Finite, AgentEnv)


def test_session_env_lives_in_core_and_tools_do_not_import_each_other():
    import ast
    from pathlib import Path

    import agentrl.envs.python_interpreter as pi
    import agentrl.session_env as se
    import agentrl.tools

    assert pi.SessionToolEnv is se.SessionToolEnv
    tools_dir = Path(agentrl.tools.__file__).parent
    for path in tools_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("agentrl.tools"), (path, node.module)
