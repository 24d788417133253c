"""reset(seed=...) seeds np_random from the seed alone (BLAKE2b -> PCG64 state), fast and exact."""

from __future__ import annotations

import numpy as np
import pytest

from agentrl import env as env_module
from agentrl.envs.calculator import CalculatorEnv
from agentrl.errors import ConfigError


def _draws(env: CalculatorEnv, seed: object) -> list[float]:
    env.reset(seed=seed)  # type: ignore[arg-type]
    return env.np_random.random(4).tolist()


def test_same_seed_same_state_across_instances_and_cache():
    a, b = CalculatorEnv(), CalculatorEnv()
    first = _draws(a, 12345)
    env_module._SEED_STATES.clear()  # recomputed, not only cached
    assert _draws(b, 12345) == first
    assert _draws(a, np.int64(12345)) == first
    assert a.np_random_seed == 12345


def test_different_seeds_differ_and_streams_differ():
    env = CalculatorEnv()
    seen = {tuple(_draws(env, s)) for s in range(200)}
    assert len(seen) == 200
    incs = set()
    for s in range(50):
        env.reset(seed=s)
        incs.add(env.np_random.bit_generator.state["state"]["inc"])
    assert len(incs) == 50 and all(i % 2 == 1 for i in incs)


def test_unseeded_reset_continues_the_stream():
    env = CalculatorEnv()
    env.reset(seed=3)
    env.reset()  # no reseed: the next task comes from the advanced generator
    after = env.np_random.bit_generator.state
    env.reset(seed=3)
    assert env.np_random.bit_generator.state != after


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, None.__class__])
def test_bad_seeds_are_config_errors(bad):
    with pytest.raises(ConfigError, match="non-negative int"):
        CalculatorEnv().reset(seed=bad)


def test_the_seed_cache_is_bounded():
    env = CalculatorEnv()
    for s in range(env_module._SEED_CACHE_SIZE + 10):
        env._seed(10**9 + s)
    assert len(env_module._SEED_STATES) <= env_module._SEED_CACHE_SIZE
