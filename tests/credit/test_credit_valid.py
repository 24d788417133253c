"""Invalid (errored) episodes: excluded from every baseline, advantage exactly 0.

The hand-worked case: a group of four where episode 3 errored. The other three must get
what a group of three gives, and the errored one 0, whatever its recorded reward
(0, or even NaN).
"""

import math

import pytest
import torch

from agentrl.credit import (
    bilevel_gae,
    build_credit_batch,
    compute_advantages,
    dr_grpo_advantages,
    gigpo_advantages,
    group_stats,
    grpo_advantages,
    mt_grpo_advantages,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
    remax_advantages,
    rloo_advantages,
    token_gae,
    turn_return_advantages,
)
from agentrl.trajectory import Trajectory, Turn

F64 = torch.float64
MASK4 = torch.tensor([[1, 1, 0], [1, 0, 1], [1, 1, 1], [1, 1, 0]], dtype=F64)
VALID4 = torch.tensor([True, True, True, False])
G4 = torch.tensor([0, 0, 0, 0])
S3 = math.sqrt(1 / 3)  # sample std of {1, 0, 1}


def _close(x: torch.Tensor, expected) -> None:
    torch.testing.assert_close(x, torch.as_tensor(expected, dtype=x.dtype))


@pytest.mark.parametrize("errored_reward", [0.0, 7.0, float("nan")])
def test_grpo_errored_episode_does_not_move_the_baseline_by_hand(errored_reward):
    rewards = torch.tensor([1.0, 0.0, 1.0, errored_reward], dtype=F64)
    adv = grpo_advantages(rewards, G4, MASK4, eps=0.0, valid=VALID4)
    # Valid members {1, 0, 1}: mean 2/3, sample std sqrt(1/3) -> (1/3)/S3, (-2/3)/S3, (1/3)/S3.
    a, b = (1 / 3) / S3, (-2 / 3) / S3
    _close(adv, [[a, a, 0], [b, 0, b], [a, a, a], [0, 0, 0]])
    # ...which is exactly what the group of three alone gives.
    three = grpo_advantages(rewards[:3], G4[:3], MASK4[:3], eps=0.0)
    torch.testing.assert_close(adv[:3], three)


def test_counting_the_errored_episode_as_reward_zero_would_differ():
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=F64)
    masked = grpo_advantages(rewards, G4, MASK4, eps=0.0, valid=VALID4)
    naive = grpo_advantages(rewards, G4, MASK4, eps=0.0)  # mean 1/2: every advantage moves
    assert not torch.allclose(masked[:3], naive[:3])


def test_dr_grpo_and_rloo_by_hand_with_an_errored_member():
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=F64)
    # Dr.GRPO: r - 2/3
    dr = dr_grpo_advantages(rewards, G4, MASK4, valid=VALID4)
    _close(dr, [[1 / 3, 1 / 3, 0], [-2 / 3, 0, -2 / 3], [1 / 3] * 3, [0, 0, 0]])
    # RLOO over n = 3 (not 4): baselines (0+1)/2, (1+1)/2, (1+0)/2
    rl = rloo_advantages(rewards, G4, MASK4, valid=VALID4)
    _close(rl, [[0.5, 0.5, 0], [-1.0, 0, -1.0], [0.5] * 3, [0, 0, 0]])


def test_group_stats_count_only_valid_members():
    x = torch.tensor([1.0, 0.0, 1.0, float("nan"), 4.0], dtype=F64)
    mean, std, count = group_stats(x, torch.tensor([0, 0, 0, 0, 1]),
                                   valid=torch.tensor([True, True, True, False, False]))
    assert count.tolist() == [3, 3, 3, 3, 0]
    assert mean.tolist() == pytest.approx([2 / 3] * 4 + [0.0])
    assert std.tolist() == pytest.approx([S3] * 4 + [0.0])


def test_reinforce_pp_whitening_ignores_invalid_episodes():
    mask = torch.tensor([[1, 1, 0, 1], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=F64)
    rewards = torch.tensor([1.0, 0.0, 100.0], dtype=F64)
    valid = torch.tensor([True, True, False])
    kl = torch.full((3, 4), 0.1, dtype=F64)
    adv = reinforce_pp_advantages(rewards, mask, kl, kl_coef=0.5, gamma=1.0, eps=0.0, valid=valid)
    # Same numbers as the two-episode hand-worked test: returns [0.85, 0.9, 0.95], [-0.1, -0.05]
    vals = [0.85, 0.9, 0.95, -0.1, -0.05]
    mean = sum(vals) / 5
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / 4)
    z = [(v - mean) / std for v in vals]
    _close(adv, [[z[0], z[1], 0.0, z[2]], [z[3], z[4], 0.0, 0.0], [0.0] * 4])


def _batch_of_four():
    """Group A: episodes 0-2 valid, 3 errored (its last turn reward 5 must be ignored).
    Group B: episode 4 alone. Two turns each except episode 2; turn 0 always sees the prompt."""
    def traj(ids, mask, turns, gid, end="terminated"):
        return Trajectory(env_id="t", token_ids=ids, loss_mask=mask, logprobs=[-0.1 * m for m in mask],
                          prompt_len=2, turns=turns, group_id=gid, end_reason=end,
                          terminated=end == "terminated")
    return [
        traj([1, 2, 10, 11, 50, 12], [0, 0, 1, 1, 0, 1], [Turn(2, 4, 0.5), Turn(5, 6, 1.0)], "A"),
        traj([1, 2, 13, 51, 14, 15], [0, 0, 1, 0, 1, 1], [Turn(2, 3, 0.0), Turn(4, 6, 0.0)], "A"),
        traj([1, 2, 16, 17], [0, 0, 1, 1], [Turn(2, 4, 1.0)], "A"),
        traj([1, 2, 18, 50, 19], [0, 0, 1, 0, 1], [Turn(2, 3, 0.5), Turn(4, 5, 5.0)], "A", end="error"),
        traj([1, 2, 20, 50, 21], [0, 0, 1, 0, 1], [Turn(2, 3, 0.2), Turn(4, 5, 0.3)], "B"),
    ]


PARAMS = {
    "grpo": {}, "dr_grpo": {}, "rloo": {}, "reinforce_pp": {"gamma": 0.9},
    "reinforce_pp_baseline": {}, "turn_return": {"gamma": 0.5},
    "mt_grpo": {"outcome_coef": 0.5}, "gigpo": {"gamma": 0.5},
    "gae": {"gamma": 0.9, "lam": 0.8}, "bilevel_gae": {"gamma_turn": 0.9, "lam_turn": 0.5},
}


@pytest.mark.parametrize("name", sorted(PARAMS) + ["remax"])
def test_every_estimator_errored_episode_equals_dropping_it(name):
    trajs = _batch_of_four()
    full = build_credit_batch(trajs, dtype=F64)
    kept = [0, 1, 2, 4]
    sub = build_credit_batch([trajs[i] for i in kept], dtype=F64)
    assert full.valid.tolist() == [True, True, True, False, True]
    torch.manual_seed(0)
    values = torch.randn(full.mask.shape, dtype=F64)
    params = dict(PARAMS.get(name, {}))
    sub_params = dict(params)
    if name == "remax":
        greedy = torch.tensor([0.3, 0.1, 0.2, float("nan"), 0.0], dtype=F64)
        params["greedy_rewards"], sub_params["greedy_rewards"] = greedy, greedy[kept]
    res = compute_advantages(name, full, values=values, **params)
    ref = compute_advantages(name, sub, values=values[kept], **sub_params)
    assert torch.equal(res.advantages[3], torch.zeros_like(res.advantages[3])), name
    torch.testing.assert_close(res.advantages[kept], ref.advantages)
    if res.returns is not None:
        assert torch.equal(res.returns[3], torch.zeros_like(res.returns[3]))
        torch.testing.assert_close(res.returns[kept], ref.returns)
    # and the group really is a group: some valid member has a nonzero advantage
    assert bool((res.advantages[:3] != 0).any()), name


def test_all_invalid_group_gives_zeros_not_nan():
    r = torch.tensor([float("nan"), 1.0, 3.0, 2.0], dtype=F64)
    g = torch.tensor([0, 0, 1, 1])
    valid = torch.tensor([False, False, True, True])
    mask = torch.ones(4, 2, dtype=F64)
    for fn in (grpo_advantages, dr_grpo_advantages, rloo_advantages, reinforce_pp_baseline_advantages):
        adv = fn(r, g, mask, valid=valid)
        assert torch.isfinite(adv).all() and torch.equal(adv[:2], torch.zeros(2, 2, dtype=F64)), fn.__name__
        assert bool((adv[2:] != 0).all()), fn.__name__
    none = torch.zeros(4, dtype=torch.bool)
    for fn in (grpo_advantages, dr_grpo_advantages, rloo_advantages, reinforce_pp_baseline_advantages):
        assert torch.equal(fn(r, g, mask, valid=none), torch.zeros(4, 2, dtype=F64)), fn.__name__
    assert torch.equal(reinforce_pp_advantages(r, mask, valid=none, eps=0.0), torch.zeros(4, 2, dtype=F64))
    assert torch.equal(remax_advantages(r, torch.zeros(4, dtype=F64), mask, valid=none),
                       torch.zeros(4, 2, dtype=F64))
    # turn-level and critic estimators
    tr = torch.tensor([[float("nan"), 1.0]] * 4, dtype=F64)
    tm = torch.ones(4, 2, dtype=F64)
    ti = torch.tensor([[0, 1]] * 4)
    keys = torch.tensor([[1, 2]] * 4)
    v = torch.randn(4, 2, dtype=F64)
    outs = [
        mt_grpo_advantages(tr, tm, r, g, ti, valid=none),
        gigpo_advantages(r, g, tr, tm, keys, ti, valid=none),
        turn_return_advantages(tr, tm, ti, valid=none),
        *bilevel_gae(tr, tm, ti, v, valid=none),
        *token_gae(tr, v, tm, valid=none),
    ]
    for out in outs:
        assert torch.equal(out, torch.zeros(4, 2, dtype=F64))


def test_turn_estimators_by_hand_with_an_errored_member():
    # MT-GRPO on the hand-worked group of three plus an errored fourth episode.
    r = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [9.0, 9.0]], dtype=F64)
    tm = torch.tensor([[1, 1], [1, 1], [1, 0], [1, 1]], dtype=F64)
    outcome = torch.tensor([1.0, 0.0, 0.0, 9.0], dtype=F64)
    ti = torch.tensor([[0, -1, 1], [0, 0, 1], [0, -1, -1], [0, 1, 1]])
    adv = mt_grpo_advantages(r, tm, outcome, G4, ti, outcome_coef=0.5, eps=0.0, valid=VALID4)
    a0 = [(1 / 3) / S3, (-2 / 3) / S3, (1 / 3) / S3]
    ao = [(2 / 3) / S3, (-1 / 3) / S3, (-1 / 3) / S3]
    _close(adv, [
        [a0[0] + 0.5 * ao[0], 0.0, 0.0 + ao[0]],
        [a0[1] + 0.5 * ao[1], a0[1] + 0.5 * ao[1], 0.0 + ao[1]],
        [a0[2] + ao[2], 0.0, 0.0],
        [0.0, 0.0, 0.0],
    ])
