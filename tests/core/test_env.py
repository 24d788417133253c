"""The environment contract on every registered env, and a new tool env built from scratch."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentrl
from agentrl import Task, ToolEnv, tool
from agentrl.checker import check_agent_env, run_oracle_episode
from agentrl.errors import EnvNotFoundError, EpisodeEndedError, InvalidActionError, ResetNeededError

ENV_IDS = [info.id for info in agentrl.list_envs()]


def test_builtin_envs_are_registered():
    assert {"agentrl/Calculator-v0", "agentrl/GuessNumber-v0"} <= set(ENV_IDS)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_env_checker_passes(env_id):
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_agentrl_checker_passes(env_id):
    report = check_agent_env(env_id, episodes=2)
    assert report.passed, report.render()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_task_different_seed_different_task(env_id):
    # The whole oracle conversation identifies the task (a hidden secret shows in the feedback).
    env = gym.make(env_id).unwrapped

    def conversation(seed):
        run_oracle_episode(env, seed)
        return env.messages

    a = conversation(11)
    assert conversation(11) == a
    assert any(conversation(s) != a for s in range(20, 26))
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_api_misuse_raises_framework_errors(env_id):
    env = gym.make(env_id).unwrapped
    with pytest.raises(ResetNeededError, match="reset"):
        env.step("hello")
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="str"):
        env.step(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidActionError):
        env.step(None)  # type: ignore[arg-type]
    # play to the end with the oracle, then one more step is an error
    run_oracle_episode(env, seed=0)
    with pytest.raises(EpisodeEndedError, match="reset"):
        env.step("again")
    env.close()


_ACTIONS = st.one_of(
    st.text(max_size=400),
    st.lists(
        st.sampled_from(['<tool_call>', '</tool_call>', '{"name": "calculator", "arguments": {"expression": ',
                         '"1/0"', '"2**99999"', '}}', '<answer>', '</answer>', '42', '[f(a=1)]', '{', '"', '\\u0000']),
        max_size=12,
    ).map("".join),
)


@pytest.mark.parametrize("env_id", ENV_IDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=st.lists(_ACTIONS, min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_no_action_string_can_crash_step(env_id, actions, seed):
    env = gym.make(env_id).unwrapped
    env.reset(seed=seed)
    for action in actions:
        messages, reward, terminated, truncated, info = env.step(action)
        assert messages in env.observation_space
        assert np.isfinite(reward)
        assert "success" in info and "turn" in info
        if terminated or truncated:
            assert info["success"] in (True, False)
            break
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_one_megabyte_action_is_an_observation(env_id):
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    messages, reward, *_ = env.step("7" * 1_000_000)
    assert messages in env.observation_space
    env.reset(seed=0)
    messages, *_ = env.step("<tool_call>" + "{" * 1_000_000)
    assert messages in env.observation_space
    env.close()


def test_unknown_id_suggests_nearest():
    with pytest.raises(EnvNotFoundError, match="Did you mean: agentrl/Calculator-v0"):
        agentrl.make("agentrl/Calculater-v0")
    with pytest.raises(gym.error.NameNotFound):  # gymnasium's own error also suggests
        gym.make("agentrl/Calculater-v0")


def test_module_prefix_syntax_imports_the_package_in_a_fresh_interpreter():
    import subprocess
    import sys

    code = (
        "import sys, gymnasium as gym\n"
        "assert 'agentrl' not in sys.modules\n"
        "env = gym.make('agentrl:agentrl/Calculator-v0')\n"
        "obs, info = env.reset(seed=1)\n"
        "print(obs[1]['role'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "user"


# --- registering a new tool environment from scratch, as the README shows -------------


@tool
def lookup_capital(country: str) -> str:
    """Return the capital city of a country.

    Args:
        country: Country name in English.
    """
    capitals = {"France": "Paris", "Japan": "Tokyo", "Kenya": "Nairobi"}
    return capitals.get(country, "unknown")


def _lookup_call(country: str) -> str:
    return '<tool_call>{"name": "lookup_capital", "arguments": {"country": "' + country + '"}}</tool_call>'


class CapitalsEnv(ToolEnv):
    """Answer 'what is the capital of X' using the lookup tool."""

    def __init__(self, **kwargs: Any):
        super().__init__([lookup_capital], max_turns=3, **kwargs)

    def sample_task(self, rng, options):
        country = ["France", "Japan", "Kenya"][rng.integers(3)]
        return Task(prompt=f"What is the capital of {country}?", answer=lookup_capital(country))

    def grade(self, task, answer):
        return float(answer.strip().lower() == task.answer.lower())

    def oracle_actions(self, task):
        country = task.prompt.removeprefix("What is the capital of ").rstrip("?")
        return [_lookup_call(country), f"<answer>{task.answer}</answer>"]


def test_register_new_tool_env_from_scratch():
    agentrl.register_env("testing/Capitals-v0", entry_point=f"{__name__}:CapitalsEnv",
                         description="Capitals quiz (test)")
    env = gym.make("testing/Capitals-v0")
    obs, info = env.reset(seed=5)
    assert obs[0]["role"] == "system" and "lookup_capital" in obs[0]["content"]
    country = obs[1]["content"].removeprefix("What is the capital of ").rstrip("?")

    messages, reward, terminated, truncated, info = env.step(_lookup_call(country))
    assert messages[0]["role"] == "tool" and messages[0]["tool_call_id"] == "call_1_0"
    capital = messages[0]["content"]
    assert reward == 0.0 and not terminated and not truncated
    assert info["tool_calls"] == [{"name": "lookup_capital", "arguments": {"country": country},
                                   "ok": True, "error_kind": None}]

    messages, reward, terminated, truncated, info = env.step(f"It is <answer>{capital}</answer>")
    assert (messages, reward, terminated, truncated) == ([], 1.0, True, False)
    assert info["success"] is True and info["answer"] == capital
    assert check_agent_env("testing/Capitals-v0", episodes=3).passed
    assert "testing/Capitals-v0" in [i.id for i in agentrl.list_envs(namespace=None)]


def test_tool_env_reports_agent_mistakes_as_tool_messages():
    env = CapitalsEnv()
    env.reset(seed=0)
    msgs, reward, term, trunc, info = env.step(
        '<tool_call>{"name": "lookup_capitol", "arguments": {}}</tool_call>'
        '<tool_call>{"name": "lookup_capital", "arguments": {"country": 3}}</tool_call>'
        "<tool_call>{oops</tool_call>")
    assert not term and not trunc and info["parsed"] is False
    contents = [m["content"] for m in msgs]
    assert contents[0].startswith("Error: could not parse a tool call: invalid JSON")
    assert "unknown tool 'lookup_capitol'; available tools: lookup_capital" in contents[1]
    assert "country must be of type string, got int" in contents[2]
    assert [c["error_kind"] for c in info["tool_calls"]] == ["unknown_tool", "bad_arguments"]


def test_tool_env_truncates_at_max_turns():
    env = CapitalsEnv()
    env.reset(seed=0)
    call = '<tool_call>{"name": "lookup_capital", "arguments": {"country": "Japan"}}</tool_call>'
    results = [env.step(call) for _ in range(3)]
    assert [r[3] for r in results] == [False, False, True]  # truncated only on the 3rd turn
    assert [r[2] for r in results] == [False, False, False]
    assert results[-1][4]["success"] is False
