"""agentrl/Support-v0: oracle, wrong policies, rules, and the scripted user."""

from __future__ import annotations

import pytest

import agentrl
from agentrl.checker import run_oracle_episode
from agentrl.envs.support import KINDS
from agentrl.parsers import ToolCall
from agentrl.users import STOP, Fact, ScriptedUser


def test_scripted_user_reveals_facts_only_when_asked_confirms_and_stops():
    user = ScriptedUser("I want a refund.", {
        "email": Fact("a@b.c", ("email",), "My email is {value}."),
        "order": Fact("#123", ("order id",), "It is order {value}.")})
    opening = user.start(seed=3)
    assert opening.endswith("I want a refund.") and "a@b.c" not in opening
    turn = user.reply([{"role": "assistant", "content": "Sure. What is your email?"}])
    assert turn.text == "My email is a@b.c." and not turn.stop and user.revealed == ["email"]
    turn = user.reply([{"role": "assistant", "content": "And the ORDER ID? Shall I proceed then?"}])
    assert turn.text.startswith("It is order #123. Yes") and not turn.stop
    turn = user.reply([{"role": "assistant", "content": "The emailing service is down."}])
    assert turn.stop and STOP in turn.text  # 'emailing' is not the word 'email': nothing to say
    patient = ScriptedUser("Help.", max_idle=2)
    patient.start(0)
    assert not patient.reply([{"role": "assistant", "content": "Hm."}]).stop
    assert patient.reply([{"role": "assistant", "content": "Hm."}]).stop
    # same seed, same phrasing; the phrasing is drawn from the seed
    assert ScriptedUser("x").start(3) == ScriptedUser("x").start(3)
    assert len({ScriptedUser("x").start(s) for s in range(20)}) > 1
    with pytest.raises(agentrl.errors.ConfigError):
        Fact("v", ())


def test_oracle_solves_every_kind():
    env = agentrl.make("agentrl/Support-v0").unwrapped
    seen = set()
    for seed in range(40):
        total, success, _ = run_oracle_episode(env, seed)
        assert success and total == 1.0, env.render()
        assert env.user_stopped and env.violations == []
        seen.add(env.task.metadata["request"]["kind"])
    assert seen == set(KINDS)
    env.close()


def _play(env, seed, actions):
    env.reset(seed=seed)
    info, reward = {}, 0.0
    for action in actions(env):
        _, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return reward, info
    _, reward, terminated, truncated, info = env.step("Goodbye.")
    return reward, info


def _eager(confirm: bool):
    """A wrong policy: authenticates, then makes the requested change whatever the rules say."""
    def actions(env):
        req = env.task.metadata["request"]
        cust = env.task.metadata["start"]["customers"][req["customer_id"]]
        calls = [ToolCall("find_customer", {"email": cust["email"], "zip_code": cust["zip"]})]
        if req["kind"] == "address":
            write = ToolCall("update_address", {"customer_id": req["customer_id"], "address": req["new_address"]})
        else:
            verb = "refund" if req["kind"].startswith("refund") else "cancel"
            write = ToolCall(f"{verb}_order", {"order_id": req["order_id"]})
        out = ["What are your email, zip code, order id and new address?", env.parser.render(calls)]
        if confirm:
            out.append("I will do what you asked. Do you confirm?")
        return [*out, env.parser.render([write]), "Done."]
    return actions


def test_wrong_policies_score_zero():
    env = agentrl.make("agentrl/Support-v0").unwrapped
    no_confirm, ignores_rules = [], []
    for seed in range(40):
        reward, info = _play(env, seed, _eager(confirm=False))
        no_confirm.append(reward)
        assert any("confirmation" in v for v in env.violations)
        reward, info = _play(env, seed, _eager(confirm=True))
        if env.task.metadata["request"]["kind"] in ("refund_late", "cancel_shipped"):
            ignores_rules.append(reward)
            assert env.violations and "not eligible" in env.violations[0] or "status shipped" in env.violations[0]
    assert no_confirm == [0.0] * 40
    assert ignores_rules and ignores_rules == [0.0] * len(ignores_rules)
    env.close()


def test_tools_need_authentication_and_other_customers_are_off_limits():
    env = agentrl.make("agentrl/Support-v0").unwrapped
    env.reset(seed=5)
    req = env.task.metadata["request"]
    msgs, *_ = env.step(env.parser.render([ToolCall("get_order", {"order_id": req["order_id"]})]))
    assert "authenticate the customer first" in msgs[0]["content"]
    cust = env.task.metadata["start"]["customers"][req["customer_id"]]
    other = next(c for c in env.db["customers"] if c != req["customer_id"])
    env.step(env.parser.render([ToolCall("find_customer", {"email": cust["email"], "zip_code": cust["zip"]}),
                                ToolCall("get_customer", {"customer_id": other})]))
    assert env.violations == [f"accessed customer {other} who is not authenticated"]
    env.close()
