"""gymnasium.make_vec on every built-in env, sync and async (shared memory on, the default)."""

from __future__ import annotations

import copy

import gymnasium as gym
import pytest

import agentrl  # noqa: F401  (registers the ids)
from agentrl.errors import ObservationTooLargeError
from agentrl.registry import list_envs
from agentrl.spaces import SharedChatBatch

# Every registered agentrl env (the built-in ones and those other modules register on
# import) must vectorize in both modes with gymnasium's defaults; the remote client needs
# a server's url (tests/serve covers it).
ENV_IDS = [info.id for info in list_envs() if not info.entry_point.startswith("agentrl.remote:")]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_make_vec_matches_single_envs_step_for_step(env_id, mode):
    seeds = [5, 9]
    singles = [gym.make(env_id).unwrapped for _ in seeds]
    vec = gym.make_vec(env_id, num_envs=2, vectorization_mode=mode)
    try:
        obs, info = vec.reset(seed=seeds)
        firsts = [env.reset(seed=s) for env, s in zip(singles, seeds, strict=True)]
        assert list(obs) == [m for m, _ in firsts]
        assert list(info["task_id"]) == [i["task_id"] for _, i in firsts]
        for _ in range(40):
            actions = [env.oracle_action() for env in singles]
            obs, rewards, terminated, truncated, info = vec.step(actions)
            outs = [env.step(a) for env, a in zip(singles, actions, strict=True)]
            assert list(obs) == [o[0] for o in outs]
            assert list(rewards) == [o[1] for o in outs]
            assert list(terminated) == [o[2] for o in outs]
            assert list(truncated) == [o[3] for o in outs]
            if any(o[2] or o[3] for o in outs):
                break
        assert any(terminated) or any(truncated), "the oracle did not end an episode in 40 steps"
    finally:
        vec.close()
        for env in singles:
            env.close()


def test_async_observations_are_plain_copies_or_a_live_view():
    vec = gym.make_vec("agentrl/GuessNumber-v0", num_envs=2, vectorization_mode="async",
                       vector_kwargs={"copy": False})
    try:
        obs, _ = vec.reset(seed=[1, 2])
        assert isinstance(obs, SharedChatBatch) and len(obs) == 2
        snapshot = copy.deepcopy(obs)
        assert isinstance(snapshot, tuple) and snapshot == tuple(obs)
        vec.step(["<answer>1</answer>", "<answer>2</answer>"])
        assert obs[0][0]["role"] == "user" and obs[0] != snapshot[0]  # the view is live
        assert obs[-1] == obs[1] and obs[0:1] == (obs[0],)
    finally:
        vec.close()


def test_an_observation_larger_than_the_slot_is_a_clear_error():
    def make():
        env = gym.make("agentrl/GuessNumber-v0").unwrapped
        env.observation_space.shared_bytes = 64  # smaller than the first observation
        return env

    with pytest.raises(ObservationTooLargeError, match="shared_memory=False"):
        _write_into(make())
    vec = gym.vector.AsyncVectorEnv([make, make], shared_memory=False)
    try:
        obs, _ = vec.reset(seed=[0, 1])
        assert obs[0][0]["role"] == "system"
    finally:
        vec.close()


def _write_into(env):
    from gymnasium.vector.utils import create_shared_memory, write_to_shared_memory

    messages, _ = env.reset(seed=0)
    buffer = create_shared_memory(env.observation_space, n=1)
    write_to_shared_memory(env.observation_space, 0, messages, buffer)
