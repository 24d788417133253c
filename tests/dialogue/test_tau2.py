"""tau2-bench airline and retail envs: splits, oracle on every task, grading, tool semantics."""

from __future__ import annotations

import json

import pytest

import agentrl
from agentrl.envs.tau2.data import load_db
from agentrl.parsers import ToolCall
from agentrl.policy.fake import FakePolicy
from agentrl.rollout import RolloutConfig, collect_sync

DOMAINS = {"airline": (50, 30, 20, 19), "retail": (114, 74, 40, 7)}


def _play(env, task_id, actions):
    env.reset(options={"task_id": task_id})
    for action in actions:
        _, reward, term, trunc, info = env.step(action)
        if term or trunc:
            return reward, info
    _, reward, *_, info = env.step("Goodbye.")
    return reward, info


@pytest.mark.parametrize("domain", DOMAINS)
def test_splits_oracle_and_tau2_grading_on_every_task(domain):
    n, n_train, n_test, n_noop = DOMAINS[domain]
    env = agentrl.make(f"agentrl/Tau2-{domain}-v0").unwrapped
    train = agentrl.make(f"agentrl/Tau2-{domain}-v0", split="train").unwrapped.task_ids()
    test = agentrl.make(f"agentrl/Tau2-{domain}-v0", split="test").unwrapped.task_ids()
    assert (len(env.task_ids()), len(train), len(test)) == (n, n_train, n_test)
    assert not set(train) & set(test) and set(train) | set(test) == set(env.task_ids())
    solved = noop = wrong = with_write = 0
    for tid in env.task_ids():
        reward, info = _play(env, tid, env.oracle_actions(env.task) if env.reset(options={"task_id": tid}) else [])
        solved += reward == 1.0 and info["success"] is True
        noop += _play(env, tid, ["OK."])[0]
        criteria = env.task.metadata["raw"]["evaluation_criteria"]
        if env.gold_state(env.task) != "{}":  # the gold actions change the database
            with_write += 1
            plan = env.oracle_actions(env.task)
            wrong += _play(env, tid, plan[:-2] + plan[-1:])[0]  # the last gold action left out
        if criteria.get("communicate_info"):
            assert _play(env, tid, env.oracle_actions(env.task)[:-1] + ["Done."])[0] == 0.0
    assert solved == n
    assert noop == n_noop  # tau2's own grading: unchanged-DB tasks with nothing to say
    assert with_write > n // 2 and wrong < with_write * 0.2  # most tasks need their last write
    strict = agentrl.make(f"agentrl/Tau2-{domain}-v0", reward_basis=("DB", "COMMUNICATE", "ACTION")).unwrapped
    assert sum(_play(strict, t, ["OK."])[0] for t in strict.task_ids()) < n_noop
    env.close()


def test_episode_writes_never_reach_the_shared_database():
    env = agentrl.make("agentrl/Tau2-airline-v0").unwrapped
    env.reset(seed=0)
    rid = next(iter(load_db("airline")["reservations"]))
    before = json.dumps(load_db("airline")["reservations"][rid], sort_keys=True)
    msgs, *_ = env.step(env.parser.render([ToolCall("cancel_reservation", {"reservation_id": rid})]))
    assert json.loads(msgs[0]["content"])["status"] == "cancelled"
    assert json.dumps(load_db("airline")["reservations"][rid], sort_keys=True) == before
    env.reset(seed=0)
    msgs, *_ = env.step(env.parser.render([ToolCall("get_reservation_details", {"reservation_id": rid})]))
    assert "cancelled" not in msgs[0]["content"]


def test_airline_booking_rules():
    env = agentrl.make("agentrl/Tau2-airline-v0").unwrapped
    env.reset(seed=0)
    users = load_db("airline")["users"]
    uid, user = next((k, u) for k, u in users.items()
                     if any(p["source"] == "certificate" for p in u["payment_methods"].values()))
    cert = next(p for p in user["payment_methods"].values() if p["source"] == "certificate")
    flights = json.loads(env.toolkit.search_direct_flight("JFK", "SEA", "2024-05-20"))
    leg = flights[0]
    price = leg["prices"]["economy"]
    args = {"user_id": uid, "origin": "JFK", "destination": "SEA", "flight_type": "one_way",
            "cabin": "economy", "flights": [{"flight_number": leg["flight_number"], "date": "2024-05-20"}],
            "passengers": [{"first_name": "A", "last_name": "B", "dob": "1990-01-01"}],
            "total_baggages": 0, "nonfree_baggages": 0, "insurance": "no"}
    bad = env.tools["book_reservation"].run({**args, "payment_methods": [{"payment_id": cert["id"], "amount": price + 1}]})
    assert not bad.ok and ("does not add up" in bad.content or "not enough balance" in bad.content)
    card = next(p for p in user["payment_methods"].values() if p["source"] == "credit_card")
    out = env.tools["book_reservation"].run({**args, "payment_methods": [{"payment_id": card["id"], "amount": price}]})
    assert out.ok and json.loads(out.content)["reservation_id"] == "HATHAT"
    seats = env.toolkit.db.get("flights", leg["flight_number"])["dates"]["2024-05-20"]["available_seats"]["economy"]
    assert seats == leg["available_seats"]["economy"] - 1
    assert "HATHAT" in env.toolkit.db.get("users", uid)["reservations"]


def test_tau2_dialogue_through_the_collector(tiny_tokenizer):
    envs = []

    def make():
        envs.append(agentrl.make("agentrl/Tau2-retail-v0", user="scripted").unwrapped)
        return envs[-1]

    agent = FakePolicy(tiny_tokenizer, lambda _p: envs[0].oracle_action())
    trajs = collect_sync(make, agent, [agentrl.EpisodeSpec(task_id=t) for t in ("0", "5", "9")],
                         RolloutConfig(max_turns=30, concurrency=1, max_context=32768, max_new_tokens=512))
    for traj in trajs:
        assert traj.success is True, traj.error
        assert traj.messages[1]["role"] == "user" and "You are" in traj.messages[1]["content"]
