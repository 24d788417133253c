"""agentrl/Calculator-v0: task generation, grading, oracle, difficulty levels."""

from __future__ import annotations

import gymnasium as gym
import pytest

import agentrl  # noqa: F401  (registers the ids)
from agentrl.checker import run_oracle_episode
from agentrl.envs.calculator import CalculatorEnv, parse_number
from agentrl.errors import ConfigError
from agentrl.tools.calculator import evaluate


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_answers_are_integers_matching_the_expression(difficulty):
    env = CalculatorEnv(difficulty=difficulty)
    for seed in range(300):
        env.reset(seed=seed)
        task = env.task
        assert isinstance(task.answer, int)
        assert evaluate(task.metadata["expression"]) == task.answer
        assert task.metadata["difficulty"] == difficulty


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_oracle_solves_every_level(difficulty):
    env = gym.make("agentrl/Calculator-v0", difficulty=difficulty)
    for seed in range(10):
        total, success, turns = run_oracle_episode(env, seed)
        assert (total, success, turns) == (1.0, True, 2)


def test_grading_needs_the_exact_number():
    env = CalculatorEnv()
    env.reset(seed=0)
    answer = env.task.answer
    for text, expected in [
        (f"<answer>{answer}</answer>", 1.0),
        (f"The result is {answer:,}.", 1.0),  # thousands separators are fine
        (f"<answer>{answer + 1}</answer>", 0.0),
        (f"<answer>{answer}.5</answer>", 0.0),
        ("I don't know", 0.0),
    ]:
        env.reset(seed=0)
        _, reward, terminated, _, info = env.step(text)
        assert (reward, terminated, info["success"]) == (expected, True, expected == 1.0), text


def test_difficulty_option_on_reset_and_validation():
    env = CalculatorEnv(difficulty=1)
    env.reset(seed=3, options={"difficulty": 3})
    assert env.task.metadata["difficulty"] == 3
    with pytest.raises(ConfigError, match="difficulty"):
        CalculatorEnv(difficulty=7)


def test_parse_number():
    assert parse_number("so 12, then 1,234") == 1234.0
    assert parse_number("-7.5 degrees") == -7.5
    assert parse_number("none") is None
