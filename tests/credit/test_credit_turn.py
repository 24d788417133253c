"""Turn-level estimators against values worked out by hand (unequal turn counts included)."""

import math

import pytest
import torch

from agentrl.credit import (
    bilevel_gae,
    gigpo_advantages,
    mt_grpo_advantages,
    turn_return_advantages,
    turn_returns,
)
from agentrl.errors import BatchShapeError, ConfigError

F64 = torch.float64
S3 = math.sqrt(1 / 3)  # sample std of {1, 0, 1} and of {1, 0, 0}


def _close(x: torch.Tensor, expected: list) -> None:
    torch.testing.assert_close(x, torch.tensor(expected, dtype=x.dtype))


def test_turn_returns_unequal_turn_counts():
    r = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]], dtype=F64)
    tm = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=F64)
    # row 0, gamma 0.5: G2 = 3; G1 = 2 + 0.5 * 3 = 3.5; G0 = 1 + 0.5 * 3.5 = 2.75. row 1: G0 = 4.
    _close(turn_returns(r, tm, gamma=0.5), [[2.75, 3.5, 3.0], [4.0, 0.0, 0.0]])
    # truncated row 1 bootstraps from a value 2.0 after its last turn: 4 + 0.5 * 2 = 5
    boot = torch.tensor([0.0, 2.0], dtype=F64)
    _close(turn_returns(r, tm, gamma=0.5, bootstrap_value=boot), [[2.75, 3.5, 3.0], [5.0, 0.0, 0.0]])


def test_turn_return_advantages_broadcast_to_turn_tokens():
    r = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]], dtype=F64)
    tm = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=F64)
    ti = torch.tensor([[-1, 0, 0, -1, 1, -1, 2], [-1, 0, 0, 0, -1, -1, -1]])
    adv = turn_return_advantages(r, tm, ti, gamma=0.5)
    _close(adv, [[0, 2.75, 2.75, 0, 3.5, 0, 3.0], [0, 4.0, 4.0, 4.0, 0, 0, 0]])


def test_bilevel_gae_by_hand():
    # Episode 0: turn 0 = tokens 0, 1; token 2 = tool result; turn 1 = token 3.
    # Episode 1: one turn (token 0), truncated: bootstrap value 1.0 after it.
    ti = torch.tensor([[0, 0, -1, 1], [0, -1, -1, -1]])
    values = torch.tensor([[0.5, 0.6, 7.0, 0.2], [0.3, 0.0, 0.0, 0.0]], dtype=F64)
    r = torch.tensor([[1.0, 2.0], [0.5, 0.0]], dtype=F64)
    tm = torch.tensor([[1, 1], [1, 0]], dtype=F64)
    boot = torch.tensor([0.0, 1.0], dtype=F64)
    adv, ret = bilevel_gae(r, tm, ti, values, gamma_turn=0.9, lam_turn=0.5,
                           gamma_token=0.9, lam_token=0.5, bootstrap_value=boot)
    # Turn values = value at each turn's first token: episode 0 [0.5, 0.2]; episode 1 [0.3].
    # Episode 0 turn level: k1: delta = 2 + 0 - 0.2 = 1.8, A1 = 1.8, G1 = 2.0
    #                       k0: delta = 1 + 0.9 * 0.2 - 0.5 = 0.68, A0 = 0.68 + 0.45 * 1.8 = 1.49, G0 = 1.99
    # Token level, turn 1 (token 3 is last): A = G1 - V3 = 2.0 - 0.2 = 1.8
    #              turn 0: token 1 (last): A = G0 - 0.6 = 1.39
    #                      token 0: delta = 0.9 * 0.6 - 0.5 = 0.04, A = 0.04 + 0.45 * 1.39 = 0.6655
    # Episode 1: k0: delta = 0.5 + 0.9 * 1.0 - 0.3 = 1.1 = A0, G0 = 1.4; token 0 (last): 1.4 - 0.3 = 1.1
    _close(adv, [[0.6655, 1.39, 0.0, 1.8], [1.1, 0.0, 0.0, 0.0]])
    _close(ret, [[0.6655 + 0.5, 1.39 + 0.6, 0.0, 1.8 + 0.2], [1.4, 0.0, 0.0, 0.0]])


def test_bilevel_gae_first_token_gets_turn_advantage_when_token_level_is_undiscounted():
    ti = torch.tensor([[0, 0, -1, 1]])
    values = torch.tensor([[0.5, 0.6, 7.0, 0.2]], dtype=F64)
    r = torch.tensor([[1.0, 2.0]], dtype=F64)
    tm = torch.ones(1, 2, dtype=F64)
    adv, _ = bilevel_gae(r, tm, ti, values, gamma_turn=0.9, lam_turn=0.5, gamma_token=1.0, lam_token=1.0)
    # gamma_token = lam_token = 1 telescopes: A_t = G_k - V_t -> token 0: 1.99 - 0.5 = 1.49 = A_turn0,
    # token 1: 1.99 - 0.6 = 1.39, token 3: 2.0 - 0.2 = 1.8
    _close(adv, [[1.49, 1.39, 0.0, 1.8]])


def test_mt_grpo_by_hand():
    # One group of three episodes with 2, 2 and 1 turns.
    r = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]], dtype=F64)
    tm = torch.tensor([[1, 1], [1, 1], [1, 0]], dtype=F64)
    outcome = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    ti = torch.tensor([[0, -1, 1], [0, 0, 1], [0, -1, -1]])
    adv = mt_grpo_advantages(r, tm, outcome, torch.tensor([0, 0, 0]), ti, outcome_coef=0.5, eps=0.0)
    # turn 0 rewards {1, 0, 1}: mean 2/3, std sqrt(1/3) -> At = [1/3, -2/3, 1/3] / S3
    # turn 1 rewards of the two members that reached it {0, 0}: all equal -> At = 0
    # outcome {1, 0, 0}: mean 1/3, std sqrt(1/3) -> Ao = [2/3, -1/3, -1/3] / S3
    # non-final turns get At + 0.5 * Ao; each episode's final turn gets At + Ao
    a0 = [(1 / 3) / S3, (-2 / 3) / S3, (1 / 3) / S3]
    ao = [(2 / 3) / S3, (-1 / 3) / S3, (-1 / 3) / S3]
    _close(adv, [
        [a0[0] + 0.5 * ao[0], 0.0, 0.0 + ao[0]],
        [a0[1] + 0.5 * ao[1], a0[1] + 0.5 * ao[1], 0.0 + ao[1]],
        [a0[2] + ao[2], 0.0, 0.0],  # one turn only: it is the final turn
    ])


def test_gigpo_by_hand():
    # Group 0: three episodes of two turns; group 1: one episode whose first observation
    # hashes like group 0's (key 7) but must not join group 0's step groups.
    outcome = torch.tensor([1.0, 0.0, 0.5, 3.0], dtype=F64)
    gids = torch.tensor([0, 0, 0, 1])
    r = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 0.5], [1.0, 0.0]], dtype=F64)
    tm = torch.tensor([[1, 1], [1, 1], [1, 1], [1, 0]], dtype=F64)
    keys = torch.tensor([[7, 8], [7, 9], [7, 8], [7, -1]])
    ti = torch.tensor([[0, 1], [0, 1], [0, 1], [0, -1]])
    adv = gigpo_advantages(outcome, gids, r, tm, keys, ti, step_coef=1.0, gamma=0.5, eps=0.0)
    # Step returns (gamma 0.5): ep0 [0 + 0.5 * 1, 1] = [0.5, 1]; ep1 [0, 0]; ep2 [0.25, 0.5]; ep3 [1]
    # Step group (g0, key 7): {0.5, 0, 0.25}: mean 0.25, std sqrt((0.0625 + 0.0625 + 0) / 2) = 0.25
    #   -> AS = [1, -1, 0]
    # Step group (g0, key 8): {1, 0.5}: mean 0.75, std sqrt(2 * 0.0625 / 1) = 0.353553 -> AS = [+0.7071, -0.7071]
    # (g0, key 9) and (g1, key 7) have one member -> AS = 0
    # Episode level, group 0 outcomes {1, 0, 0.5}: mean 0.5, std 0.5 -> AE = [1, -1, 0]; group 1: AE = 0
    h = 0.25 / math.sqrt(0.125)  # 0.7071
    _close(adv, [[1 + 1, 1 + h], [-1 - 1, -1 + 0], [0 + 0, 0 - h], [0.0, 0.0]])


def test_turn_estimators_degenerate_groups_are_zero_not_nan():
    r = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    tm = torch.ones(2, 2)
    ti = torch.tensor([[0, 1], [0, 1]])
    same = torch.tensor([2.0, 2.0])
    for gids in (torch.tensor([0, 0]), torch.tensor([0, 1])):
        a = mt_grpo_advantages(r, tm, same, gids, ti)
        # same observations at the same turn -> equal step returns in each step group
        b = gigpo_advantages(same, gids, r, tm, torch.tensor([[1, 2], [1, 2]]), ti)
        assert torch.equal(a, torch.zeros(2, 2)) and torch.equal(b, torch.zeros(2, 2))


def test_turn_estimators_reject_bad_inputs():
    r = torch.zeros(2, 2)
    with pytest.raises(BatchShapeError, match="turn_mask"):
        turn_returns(r, torch.zeros(2, 3))
    with pytest.raises(ConfigError, match="gamma_turn"):
        bilevel_gae(r, torch.ones(2, 2), torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), gamma_turn=2.0)
    with pytest.raises(BatchShapeError, match="obs_keys"):
        gigpo_advantages(torch.zeros(2), torch.zeros(2, dtype=torch.long), r, torch.ones(2, 2),
                         torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
