"""The estimator registry: names, specs, one call shape, clear errors; new batch fields."""

import inspect

import pytest
import torch

from agentrl.credit import (
    ESTIMATORS,
    bilevel_gae,
    build_credit_batch,
    compute_advantages,
    dr_grpo_advantages,
    gigpo_advantages,
    grpo_advantages,
    mt_grpo_advantages,
    observation_keys,
    register_estimator,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
    remax_advantages,
    rloo_advantages,
    token_gae,
    turn_return_advantages,
    turn_rewards_to_tokens,
)
from agentrl.credit._ops import masked_backward_scan, reverse_discounted_cumsum
from agentrl.credit.registry import AdvantageResult, shaping_rewards
from agentrl.errors import BatchShapeError, ConfigError
from agentrl.trajectory import Trajectory, Turn

F64 = torch.float64
NAMES = ["grpo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "remax", "gae",
         "turn_return", "bilevel_gae", "mt_grpo", "gigpo"]
UNDERLYING = {
    "grpo": grpo_advantages, "dr_grpo": dr_grpo_advantages, "rloo": rloo_advantages,
    "reinforce_pp": reinforce_pp_advantages, "reinforce_pp_baseline": reinforce_pp_baseline_advantages,
    "remax": remax_advantages, "gae": token_gae, "turn_return": turn_return_advantages,
    "bilevel_gae": bilevel_gae, "mt_grpo": mt_grpo_advantages, "gigpo": gigpo_advantages,
}


def _traj(ids, mask, turns, gid, end="terminated"):
    return Trajectory(env_id="t", token_ids=ids, loss_mask=mask, logprobs=[-0.2 * m for m in mask],
                      prompt_len=2, turns=turns, group_id=gid, end_reason=end,
                      terminated=end != "max_turns", truncated=end == "max_turns")


def _trajs():
    return [
        _traj([1, 2, 10, 11, 50, 12], [0, 0, 1, 1, 0, 1], [Turn(2, 4, 0.5), Turn(5, 6, 1.0)], "A"),
        _traj([1, 2, 13, 51, 14, 15], [0, 0, 1, 0, 1, 1], [Turn(2, 3, 0.0), Turn(4, 6, 0.25)], "A"),
        _traj([1, 2, 16, 17], [0, 0, 1, 1], [Turn(2, 4, 1.0)], "A", end="max_turns"),
        _traj([1, 2, 18, 50, 19], [0, 0, 1, 0, 1], [Turn(2, 3, 0.5), Turn(4, 5, 2.0)], "A", end="error"),
        _traj([1, 2, 20, 50, 21], [0, 0, 1, 0, 1], [Turn(2, 3, 0.2), Turn(4, 5, 0.3)], "B"),
        _traj([1, 2, 22, 50, 23], [0, 0, 1, 0, 1], [Turn(2, 3, 0.0), Turn(4, 5, 0.1)], "B"),
    ]


def test_batch_carries_valid_outcome_turn_spans_and_obs_keys():
    trajs = _trajs()
    b = build_credit_batch(trajs)
    assert b.valid.dtype == torch.bool and b.valid.tolist() == [True, True, True, False, True, True]
    # outcome = the final turn's reward; rewards = sum of turn rewards
    assert b.outcome.tolist() == pytest.approx([1.0, 0.25, 1.0, 2.0, 0.3, 0.1])
    assert b.rewards.tolist() == pytest.approx([1.5, 0.25, 1.0, 2.5, 0.5, 0.1])
    assert b.turn_starts.dtype == torch.long and b.turn_ends.dtype == torch.long
    assert b.turn_starts.tolist() == [[2, 5], [2, 4], [2, -1], [2, 4], [2, 4], [2, 4]]
    assert b.turn_ends.tolist() == [[4, 6], [3, 6], [4, -1], [3, 5], [3, 5], [3, 5]]
    assert torch.equal(b.obs_keys, observation_keys(trajs))
    assert b.obs_keys[2, 1] == -1
    # episodes 0, 3, 4, 5 saw the same tool result [50] before turn 1
    assert b.obs_keys[0, 1] == b.obs_keys[3, 1] == b.obs_keys[4, 1] != b.obs_keys[1, 1]
    # a trajectory without turns: outcome 0, spans -1
    empty = _traj([1, 2], [0, 0], [], "C", end="error")
    e = build_credit_batch([empty])
    assert e.outcome.tolist() == [0.0] and e.turn_starts.tolist() == [[-1]] and not bool(e.valid[0])


def test_registry_lists_the_planned_names_with_specs():
    assert set(NAMES) <= set(ESTIMATORS)
    for name in NAMES:
        spec = ESTIMATORS[name]
        assert spec.name == name and spec.doc
        # every advertised parameter is a real keyword of the underlying function
        accepted = set(inspect.signature(UNDERLYING[name]).parameters)
        assert set(spec.params) <= accepted, (name, set(spec.params) - accepted)
    assert {n for n in NAMES if ESTIMATORS[n].needs_critic} == {"gae", "bilevel_gae"}
    assert {n for n in NAMES if ESTIMATORS[n].needs_obs_keys} == {"gigpo"}
    assert {n for n in NAMES if ESTIMATORS[n].needs_groups} == {
        "grpo", "dr_grpo", "rloo", "reinforce_pp_baseline", "mt_grpo", "gigpo"}


def _direct(name, b, values, greedy):
    v = b.valid
    if name == "grpo":
        return grpo_advantages(b.rewards, b.group_ids, b.mask, eps=0.01, valid=v), None
    if name == "dr_grpo":
        return dr_grpo_advantages(b.rewards, b.group_ids, b.mask, valid=v), None
    if name == "rloo":
        return rloo_advantages(b.rewards, b.group_ids, b.mask, valid=v), None
    if name == "reinforce_pp":
        return reinforce_pp_advantages(b.rewards, b.mask, gamma=0.9, valid=v), None
    if name == "reinforce_pp_baseline":
        return reinforce_pp_baseline_advantages(b.rewards, b.group_ids, b.mask, gamma=0.9, valid=v), None
    if name == "remax":
        return remax_advantages(b.rewards, greedy, b.mask, valid=v), None
    if name == "gae":
        tr = turn_rewards_to_tokens(b.turn_rewards, b.turn_mask, b.turn_index)
        return token_gae(tr, values, b.mask, gamma=0.9, lam=0.8, valid=v)
    if name == "turn_return":
        return turn_return_advantages(b.turn_rewards, b.turn_mask, b.turn_index, gamma=0.9, valid=v), None
    if name == "bilevel_gae":
        return bilevel_gae(b.turn_rewards, b.turn_mask, b.turn_index, values, gamma_turn=0.9, valid=v)
    if name == "mt_grpo":
        return mt_grpo_advantages(shaping_rewards(b), b.turn_mask, b.outcome, b.group_ids, b.turn_index,
                                  outcome_coef=0.5, valid=v), None
    assert name == "gigpo"
    return gigpo_advantages(b.rewards, b.group_ids, b.turn_rewards, b.turn_mask, b.obs_keys, b.turn_index,
                            gamma=0.9, valid=v), None


PARAMS = {"grpo": {"eps": 0.01}, "reinforce_pp": {"gamma": 0.9}, "reinforce_pp_baseline": {"gamma": 0.9},
          "gae": {"gamma": 0.9, "lam": 0.8}, "turn_return": {"gamma": 0.9}, "bilevel_gae": {"gamma_turn": 0.9},
          "mt_grpo": {"outcome_coef": 0.5}, "gigpo": {"gamma": 0.9}}


@pytest.mark.parametrize("name", NAMES)
def test_every_registered_name_equals_the_direct_call(name):
    b = build_credit_batch(_trajs(), dtype=F64)
    values = torch.linspace(-1, 1, b.mask.numel(), dtype=F64).reshape(b.mask.shape)
    greedy = torch.tensor([0.5, 0.5, 0.5, 0.0, 0.1, 0.1], dtype=F64)
    params = dict(PARAMS.get(name, {}))
    if name == "remax":
        params["greedy_rewards"] = greedy
    res = compute_advantages(name, b, values=values, **params)
    assert isinstance(res, AdvantageResult)
    adv, ret = _direct(name, b, values, greedy)
    torch.testing.assert_close(res.advantages, adv, rtol=0, atol=0)
    if ret is None:
        assert res.returns is None
    else:
        torch.testing.assert_close(res.returns, ret, rtol=0, atol=0)
    assert res.advantages.shape == b.mask.shape
    assert torch.equal(res.advantages[3], torch.zeros_like(res.advantages[3]))  # the errored episode
    assert torch.equal(res.advantages * (1 - b.mask), torch.zeros_like(res.advantages))


def test_shaping_rewards_zero_the_final_turn():
    b = build_credit_batch(_trajs())
    # episode 0: [0.5, 1.0] -> [0.5, 0]; episode 2 (one turn): [1.0] -> [0]
    torch.testing.assert_close(shaping_rewards(b), torch.tensor(
        [[0.5, 0.0], [0.0, 0.0], [0.0, 0.0], [0.5, 0.0], [0.2, 0.0], [0.0, 0.0]]))


def test_registry_errors_are_clear():
    b = build_credit_batch(_trajs())
    with pytest.raises(ConfigError, match=r"unknown advantage estimator 'gpro'.*grpo"):
        compute_advantages("gpro", b)
    with pytest.raises(ConfigError, match=r"'lam'.*accepts eps, unbiased"):
        compute_advantages("grpo", b, lam=0.9)
    with pytest.raises(ConfigError, match="accepts none"):
        compute_advantages("rloo", b, gamma=0.9)
    with pytest.raises(ConfigError, match="needs critic values"):
        compute_advantages("gae", b)
    with pytest.raises(BatchShapeError, match="values must have shape"):
        compute_advantages("bilevel_gae", b, values=torch.zeros(2, 2))
    with pytest.raises(ConfigError, match="greedy_rewards"):
        compute_advantages("remax", b)
    with pytest.raises(ConfigError, match="gamma must be in"):
        compute_advantages("turn_return", b, gamma=2.0)
    with pytest.raises(ConfigError, match="already registered"):
        register_estimator("grpo", lambda batch, values: batch.mask, doc="x")


def test_register_a_user_estimator():
    def constant(batch, values, *, scale=1.0):
        return batch.mask * scale * batch.valid[:, None]

    try:
        spec = register_estimator("const_test", constant, doc="scale on every valid model token",
                                  params=("scale",))
        assert ESTIMATORS["const_test"] is spec and not spec.needs_critic
        b = build_credit_batch(_trajs())
        res = compute_advantages("const_test", b, scale=2.0)
        assert res.returns is None
        assert torch.equal(res.advantages, b.mask * 2.0 * b.valid[:, None])
        with pytest.raises(ConfigError, match="required"):
            register_estimator("bad_test", constant, doc="x", required=("scale",))
    finally:
        ESTIMATORS.pop("const_test", None)


def test_masked_backward_scan_is_returns_gae_and_cut():
    x = torch.tensor([[1.0, 5.0, 2.0, 3.0]], dtype=F64)
    m = torch.tensor([[1, 0, 1, 1]], dtype=F64)
    # returns, gamma 0.5, bootstrap 4: G3 = 3 + 2 = 5; G2 = 2 + 2.5 = 4.5; (t1 skipped); G0 = 1 + 2.25 = 3.25
    g = masked_backward_scan(x, m, 0.5, bootstrap=torch.tensor([4.0], dtype=F64))
    torch.testing.assert_close(g, torch.tensor([[3.25, 0.0, 4.5, 5.0]], dtype=F64))
    torch.testing.assert_close(reverse_discounted_cumsum(x, m, 0.5, torch.tensor([4.0], dtype=F64)), g)
    # cut at t2: nothing after t2 flows into it: G2 = 2, G0 = 1 + 0.5 * 2 = 2; G3 unchanged 3
    c = torch.tensor([[0.0, 0.0, 1.0, 0.0]], dtype=F64)
    torch.testing.assert_close(masked_backward_scan(x, m, 0.5, cut=c),
                               torch.tensor([[2.0, 0.0, 2.0, 3.0]], dtype=F64))
    # GAE form with values (gamma 1, lam 0): A_t = r_t + V_t' - V_t
    v = torch.tensor([[0.5, 99.0, 0.25, 1.0]], dtype=F64)
    a = masked_backward_scan(x, m, 1.0, lam=0.0, values=v)
    torch.testing.assert_close(a, torch.tensor([[1 + 0.25 - 0.5, 0.0, 2 + 1.0 - 0.25, 3 - 1.0]], dtype=F64))
