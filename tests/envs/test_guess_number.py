"""agentrl/GuessNumber-v0: feedback, per-turn rewards, truncation, oracle."""

from __future__ import annotations

import pytest

from agentrl.envs.guess_number import GuessNumberEnv
from agentrl.errors import ConfigError


def _env_with_secret(secret: int, **kw) -> GuessNumberEnv:
    env = GuessNumberEnv(**kw)
    env.reset(seed=0)
    env.secret = secret  # fix the secret so the arithmetic below is by hand
    return env


def test_feedback_and_per_turn_rewards():
    env = _env_with_secret(30, low=1, high=100)
    # 50 > 30 -> "lower", consistent with [1,100] -> reward 0; range becomes [1,49]
    msgs, r, term, trunc, _ = env.step("<answer>50</answer>")
    assert (r, term, trunc) == (0.0, False, False) and "lower" in msgs[0]["content"]
    # 60 is outside [1,49]: a wasted guess -> -0.1
    msgs, r, *_ = env.step("<answer>60</answer>")
    assert r == -0.1 and "lower" in msgs[0]["content"]
    # no integer -> -0.2
    msgs, r, *_ = env.step("hmm")
    assert r == -0.2 and "could not read" in msgs[0]["content"]
    # 20 < 30 -> "higher", consistent -> 0; range [21,49]
    msgs, r, *_ = env.step("20")
    assert r == 0.0 and "higher" in msgs[0]["content"]
    msgs, r, term, trunc, info = env.step("<answer>30</answer>")
    assert (r, term, trunc, info["success"]) == (1.0, True, False, True)
    assert (env.lo, env.hi) == (21, 49)


def test_truncation_after_max_turns():
    env = _env_with_secret(7, low=1, high=10, max_turns=2)
    assert env.step("1")[3] is False
    msgs, r, term, trunc, info = env.step("2")
    assert (term, trunc, info["success"]) == (False, True, False)
    assert "the number was 7" in msgs[0]["content"]


def test_oracle_is_binary_search_within_log2_turns():
    env = GuessNumberEnv(low=1, high=100, max_turns=7)  # ceil(log2(100)) = 7
    for seed in range(40):
        env.reset(seed=seed)
        while True:
            _, _, term, trunc, info = env.step(env.oracle_action())
            if term or trunc:
                break
        assert info["success"] is True and env.turn <= 7


def test_bad_config():
    with pytest.raises(ConfigError, match="greater than"):
        GuessNumberEnv(low=5, high=5)
