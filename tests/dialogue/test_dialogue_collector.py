"""Dialogue envs through the rollout collector: scripted and policy-backed users.

The user's messages must reach the trajectory as environment tokens (loss mask 0).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from agentrl.envs.support import SupportEnv
from agentrl.policy.fake import FakePolicy
from agentrl.rollout import RolloutConfig, collect_sync
from agentrl.users import STOP


def _oracle_agent(tokenizer: Any, envs: list[SupportEnv]) -> FakePolicy:
    # concurrency 1: one env instance, whose state is the episode being generated for
    return FakePolicy(tokenizer, lambda _prompt: envs[0].oracle_action())


def _masked_text(tokenizer: Any, traj: Any, mask: int) -> str:
    return tokenizer.decode([t for t, m in zip(traj.token_ids, traj.loss_mask, strict=True) if m == mask])


def _factory(envs: list[SupportEnv], **kw: Any):
    def make() -> SupportEnv:
        envs.append(SupportEnv(**kw))
        return envs[-1]
    return make


def test_scripted_user_through_the_collector(tiny_tokenizer):
    envs: list[SupportEnv] = []
    config = RolloutConfig(max_turns=12, concurrency=1, max_context=4096, max_new_tokens=200)
    trajs = collect_sync(_factory(envs, user="scripted"), _oracle_agent(tiny_tokenizer, envs),
                         list(range(6)), config)
    assert len(envs) == 1
    for traj in trajs:
        assert traj.success is True and traj.end_reason == "terminated", traj.error
        assert traj.reset_info["user"] == "scripted"
        user_texts = [m["content"] for m in traj.messages if m["role"] == "user"]
        assert len(user_texts) >= 2  # the opening, the facts (and a confirmation for a change)
        revealed = next(t for t in user_texts if "My email is" in t)
        assert revealed in _masked_text(tiny_tokenizer, traj, 0)
        assert "My email is" not in _masked_text(tiny_tokenizer, traj, 1)
        assert traj.turns[-1].info["user_stopped"] is True


def _user_fake(tokenizer: Any) -> FakePolicy:
    """A policy-backed user that reads its instructions and answers like a customer."""
    def reply(prompt: str) -> str:
        details = prompt.split("only when asked:", 1)[1].split(". Say yes", 1)[0]
        facts = dict(re.findall(r"your (\w+) is ([^;]+)", details))
        last = prompt.rsplit("<|im_start|>user", 1)[-1]
        if "Hi! How can I help you today?" in last:
            return "Hello, I need help with my order."
        if "email" in last:
            return " ".join(f"My {k} is {v}." for k, v in facts.items())
        if "confirm" in last:
            return "Yes, go ahead."
        return f"Thanks! {STOP}"
    return FakePolicy(tokenizer, reply)


def test_policy_backed_user_through_the_collector(tiny_tokenizer):
    envs: list[SupportEnv] = []
    user = _user_fake(tiny_tokenizer)
    config = RolloutConfig(max_turns=12, concurrency=1, max_new_tokens=200)
    trajs = collect_sync(_factory(envs, user=user), _oracle_agent(tiny_tokenizer, envs),
                         list(range(4)), config)
    for traj in trajs:
        assert traj.reset_info["user"] == "policy"
        assert traj.success is True, [m["content"] for m in traj.messages[1:]]
        opening = traj.messages[1]
        assert opening == {"role": "user", "content": "Hello, I need help with my order."}
        assert "My email is" in _masked_text(tiny_tokenizer, traj, 0)
    # the user model saw its instructions (with the facts) and the agent's messages as user turns
    prompt = tiny_tokenizer.decode(user.calls[1])
    assert "your email is" in prompt and "verify your identity" in prompt.rsplit("<|im_start|>user", 1)[-1]


@pytest.mark.vllm
def test_tiny_vllm_model_as_the_user(tiny_tokenizer, vllm_policy):
    envs: list[SupportEnv] = []
    config = RolloutConfig(max_turns=5, concurrency=1, max_new_tokens=200)
    trajs = collect_sync(_factory(envs, user=vllm_policy), _oracle_agent(tiny_tokenizer, envs),
                         [0, 1], config)
    for traj in trajs:
        assert traj.error is None and traj.reset_info["user"] == "policy"
        user_texts = [m["content"] for m in traj.messages[1:] if m["role"] == "user"]
        assert user_texts and all(isinstance(t, str) and t for t in user_texts)
        env_text = _masked_text(tiny_tokenizer, traj, 0)
        assert all(t[:20] in env_text for t in user_texts)
    # seeded and greedy: the same opening again
    again = collect_sync(_factory([], user=vllm_policy), FakePolicy(tiny_tokenizer, ["bye"], cycle=True), [0],
                         RolloutConfig(max_turns=1, concurrency=1))
    assert again[0].messages[1] == trajs[0].messages[1]


@pytest.mark.parametrize("bad", ["gpt-4", "", 3])
def test_bad_user_spec_is_a_config_error(bad):
    from agentrl.errors import ConfigError

    with pytest.raises(ConfigError):
        SupportEnv(user=bad).reset(seed=0)


def test_policy_spec_string_user_is_loaded_once(tiny_model_path):
    from agentrl.users import _POLICIES

    spec = f"hf:{tiny_model_path}"
    a, b = SupportEnv(user=spec), SupportEnv(user=spec)
    obs_a, info = a.reset(seed=3)
    obs_b, _ = b.reset(seed=3)
    assert info["user"] == "policy" and obs_a[1]["role"] == "user"
    assert obs_a[1] == obs_b[1]  # greedy and seeded: the same opening
    assert list(_POLICIES) == [spec] or spec in _POLICIES
    assert a.user.policy is b.user.policy  # one model for every env of the process
    msgs, _, term, trunc, _ = a.step("What is your email?")
    assert term or (msgs and msgs[0]["role"] == "user")
