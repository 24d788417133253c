"""Trajectory-level estimators against values worked out by hand."""

import math

import pytest
import torch

from agentrl.credit import (
    dr_grpo_advantages,
    grpo_advantages,
    kl_shaped_token_returns,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
    remax_advantages,
    rloo_advantages,
)
from agentrl.errors import BatchShapeError

F64 = torch.float64

# Six episodes: group 0 = rewards [1, 0, 1]; group 1 = one episode (reward 5);
# group 2 = two episodes with equal rewards [2, 2]. Episode 1 has a masked env token.
REWARDS = torch.tensor([1.0, 0.0, 1.0, 5.0, 2.0, 2.0], dtype=F64)
GROUPS = torch.tensor([0, 0, 0, 1, 2, 2])
MASK = torch.tensor(
    [[1, 1, 0], [1, 0, 1], [1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 0, 0]], dtype=F64
)


def _close(x: torch.Tensor, expected: list) -> None:
    torch.testing.assert_close(x, torch.tensor(expected, dtype=x.dtype))


def _per_episode(adv: torch.Tensor) -> list[float]:
    """The advantage of each episode, after checking it is constant on its tokens and 0 off them."""
    out = []
    for row, m in zip(adv, MASK, strict=True):
        on = row[m > 0]
        assert torch.allclose(on, on[0].expand_as(on))
        assert (row[m == 0] == 0).all()
        out.append(float(on[0]))
    return out


def test_grpo_by_hand():
    adv = grpo_advantages(REWARDS, GROUPS, MASK, eps=0.0)
    # group 0: mean = 2/3; sample std = sqrt(((1/3)^2 + (2/3)^2 + (1/3)^2) / (3 - 1)) = sqrt(1/3)
    s = math.sqrt(1 / 3)
    expected = [(1 - 2 / 3) / s, (0 - 2 / 3) / s, (1 - 2 / 3) / s,  # 0.577, -1.155, 0.577
                0.0,  # group of one: r - mean = 0
                0.0, 0.0]  # all-equal group: 0 / 0 -> defined as 0, no NaN
    assert _per_episode(adv) == pytest.approx(expected)
    assert torch.isfinite(adv).all()


def test_grpo_population_std_and_eps():
    adv = grpo_advantages(REWARDS, GROUPS, MASK, eps=0.1, unbiased=False)
    s = math.sqrt(((1 / 3) ** 2 + (2 / 3) ** 2 + (1 / 3) ** 2) / 3)  # population std = sqrt(2/9)
    assert _per_episode(adv)[:3] == pytest.approx([(1 / 3) / (s + 0.1), (-2 / 3) / (s + 0.1), (1 / 3) / (s + 0.1)])
    assert _per_episode(adv)[3:] == [0.0, 0.0, 0.0]


def test_dr_grpo_by_hand():
    adv = dr_grpo_advantages(REWARDS, GROUPS, MASK)
    # r - mean_g: 1 - 2/3, 0 - 2/3, 1 - 2/3, 5 - 5, 2 - 2, 2 - 2
    assert _per_episode(adv) == pytest.approx([1 / 3, -2 / 3, 1 / 3, 0.0, 0.0, 0.0])


def test_rloo_by_hand():
    adv = rloo_advantages(REWARDS, GROUPS, MASK)
    # leave-one-out baselines in group 0: (0+1)/2, (1+1)/2, (1+0)/2
    # group 1 (size 1): no baseline -> 0; group 2: 2 - 2/1 = 0
    assert _per_episode(adv) == pytest.approx([1 - 0.5, 0 - 1.0, 1 - 0.5, 0.0, 0.0, 0.0])


def test_remax_by_hand():
    greedy = torch.tensor([0.5, 0.5, 0.5, 4.0, 2.0, 3.0], dtype=F64)
    adv = remax_advantages(REWARDS, greedy, MASK)
    assert _per_episode(adv) == pytest.approx([0.5, -0.5, 0.5, 1.0, 0.0, -1.0])


def test_kl_shaped_returns_skip_env_tokens():
    # Row 0: model tokens at 0, 1, 3 (2 is a tool result); row 1: model tokens at 0, 1.
    mask = torch.tensor([[1, 1, 0, 1], [1, 1, 0, 0]], dtype=F64)
    rewards = torch.tensor([1.0, 0.0], dtype=F64)
    kl = torch.full((2, 4), 0.1, dtype=F64)
    g = kl_shaped_token_returns(rewards, mask, kl, kl_coef=0.5, gamma=0.5)
    # token rewards: -0.5 * 0.1 = -0.05 per model token, +1 on row 0's last model token (3)
    # row 0: G3 = 0.95; G1 = -0.05 + 0.5 * 0.95 = 0.425 (env token 2 skipped, not discounted);
    #        G0 = -0.05 + 0.5 * 0.425 = 0.1625
    # row 1: G1 = -0.05; G0 = -0.05 + 0.5 * -0.05 = -0.075
    _close(g, [[0.1625, 0.425, 0.0, 0.95], [-0.075, -0.05, 0.0, 0.0]])


def test_reinforce_pp_by_hand():
    mask = torch.tensor([[1, 1, 0, 1], [1, 1, 0, 0]], dtype=F64)
    rewards = torch.tensor([1.0, 0.0], dtype=F64)
    kl = torch.full((2, 4), 0.1, dtype=F64)
    adv = reinforce_pp_advantages(rewards, mask, kl, kl_coef=0.5, gamma=1.0, eps=0.0)
    # gamma = 1 returns: row 0 [0.85, 0.9, -, 0.95]; row 1 [-0.1, -0.05]
    vals = [0.85, 0.9, 0.95, -0.1, -0.05]
    mean = sum(vals) / 5  # 0.51
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / 4)  # sqrt(1.147 / 4) = 0.53549
    z = [(v - mean) / std for v in vals]
    _close(adv, [[z[0], z[1], 0.0, z[2]], [z[3], z[4], 0.0, 0.0]])


def test_reinforce_pp_baseline_by_hand():
    mask = torch.tensor([[1, 1, 0, 1], [1, 1, 0, 0]], dtype=F64)
    rewards = torch.tensor([1.0, 0.0], dtype=F64)
    adv = reinforce_pp_baseline_advantages(rewards, torch.tensor([4, 4]), mask, eps=0.0)
    # centred rewards: 1 - 0.5 = 0.5, 0 - 0.5 = -0.5; no KL, gamma 1 -> returns 0.5 x3, -0.5 x2
    # batch mean (1.5 - 1.0) / 5 = 0.1; var = (3 * 0.4^2 + 2 * 0.6^2) / 4 = 0.3
    s = math.sqrt(0.3)
    _close(adv, [[0.4 / s, 0.4 / s, 0.0, 0.4 / s], [-0.6 / s, -0.6 / s, 0.0, 0.0]])


def test_degenerate_batches_give_zero_not_nan():
    mask = torch.ones(4, 3)
    same = torch.tensor([3.0, 3.0, 3.0, 3.0])
    for fn in (grpo_advantages, dr_grpo_advantages, rloo_advantages):
        adv = fn(same, torch.tensor([0, 0, 1, 1]), mask)
        assert torch.equal(adv, torch.zeros(4, 3)), fn.__name__
        solo = fn(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.arange(4), mask)
        assert torch.equal(solo, torch.zeros(4, 3)), fn.__name__
    # all-equal token returns: whitening gives 0, not NaN
    assert torch.equal(reinforce_pp_advantages(same, mask), torch.zeros(4, 3))
    # an episode with no model token does not break anything
    m = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    adv = grpo_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), m)
    assert torch.isfinite(adv).all() and adv[1].abs().sum() == 0


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(BatchShapeError, match="rewards must have shape"):
        grpo_advantages(torch.zeros(3), torch.zeros(4, dtype=torch.long), torch.ones(4, 2))
    with pytest.raises(BatchShapeError, match="group_ids"):
        rloo_advantages(torch.zeros(4), torch.zeros(3, dtype=torch.long), torch.ones(4, 2))
    with pytest.raises(BatchShapeError, match="NaN"):
        grpo_advantages(torch.tensor([1.0, float("nan")]), torch.zeros(2, dtype=torch.long), torch.ones(2, 2))
    with pytest.raises(BatchShapeError, match=r"mask must be \[B, L\]"):
        grpo_advantages(torch.zeros(2), torch.zeros(2, dtype=torch.long), torch.ones(2))


def test_integer_rewards_and_zero_eps_whitening():
    mask = torch.ones(2, 2)
    ints = torch.tensor([1, 0])
    torch.testing.assert_close(rloo_advantages(ints, torch.tensor([0, 0]), mask),
                               torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))  # 1 - 0, 0 - 1
    torch.testing.assert_close(grpo_advantages(ints, torch.tensor([0, 0]), mask, eps=0.0),
                               torch.tensor([[0.5, 0.5], [-0.5, -0.5]]) / (0.5**0.5))  # std = sqrt(0.5)
    assert torch.equal(reinforce_pp_advantages(torch.tensor([2, 2]), mask, eps=0.0), torch.zeros(2, 2))
