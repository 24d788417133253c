"""Token-level GAE: hand-worked cases and a plain-Python reference on random inputs."""

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agentrl.credit import token_gae, turn_rewards_to_tokens
from agentrl.errors import BatchShapeError, ConfigError

F64 = torch.float64


def _close(x: torch.Tensor, expected: list) -> None:
    torch.testing.assert_close(x, torch.tensor(expected, dtype=x.dtype))


def test_gae_by_hand_skips_env_token():
    # tokens: model, model, TOOL RESULT, model. Turn 0 ends at token 1 (reward 1.0), turn 1 at 3 (0.5).
    rewards = torch.tensor([[0.0, 1.0, 0.0, 0.5]], dtype=F64)
    values = torch.tensor([[0.5, 0.4, 99.0, 0.2]], dtype=F64)  # 99 on the env token must never be read
    mask = torch.tensor([[1, 1, 0, 1]], dtype=F64)
    adv, ret = token_gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # t3: delta = 0.5 + 0.9 * 0 - 0.2 = 0.3;                       A3 = 0.3
    # t2: env token: V and A carry over unchanged (next value 0.2, running A 0.3)
    # t1: delta = 1.0 + 0.9 * 0.2 - 0.4 = 0.78;                    A1 = 0.78 + 0.72 * 0.3 = 0.996
    # t0: delta = 0.0 + 0.9 * 0.4 - 0.5 = -0.14;                   A0 = -0.14 + 0.72 * 0.996 = 0.57712
    _close(adv, [[0.57712, 0.996, 0.0, 0.3]])
    _close(ret, [[0.57712 + 0.5, 0.996 + 0.4, 0.0, 0.3 + 0.2]])


def test_gae_truncated_episode_bootstraps_from_value():
    rewards = torch.tensor([[0.0, 1.0, 0.0, 0.5], [0.0, 1.0, 0.0, 0.5]], dtype=F64)
    values = torch.tensor([[0.5, 0.4, 0.0, 0.2]] * 2, dtype=F64)
    mask = torch.tensor([[1, 1, 0, 1]] * 2, dtype=F64)
    boot = torch.tensor([1.0, 0.0], dtype=F64)  # row 0 was truncated, row 1 terminated
    adv, _ = token_gae(rewards, values, mask, gamma=0.9, lam=0.8, bootstrap_value=boot)
    # row 0, t3: delta = 0.5 + 0.9 * 1.0 - 0.2 = 1.2; t1: 0.78 + 0.72 * 1.2 = 1.644;
    #        t0: -0.14 + 0.72 * 1.644 = 1.04368
    _close(adv, [[1.04368, 1.644, 0.0, 1.2], [0.57712, 0.996, 0.0, 0.3]])


def test_gae_values_off_mask_may_be_nan():
    rewards = torch.tensor([[0.0, 1.0, 0.0, 0.0]], dtype=F64)
    values = torch.tensor([[0.5, 0.4, float("nan"), float("nan")]], dtype=F64)
    mask = torch.tensor([[1, 1, 0, 0]], dtype=F64)
    adv, ret = token_gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # gamma = lam = 1: A_t = (sum of future rewards) - V_t = 1 - 0.5, 1 - 0.4
    _close(adv, [[0.5, 0.6, 0.0, 0.0]])
    _close(ret, [[1.0, 1.0, 0.0, 0.0]])


def test_turn_rewards_to_tokens_places_reward_on_last_token():
    turn_rewards = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]])
    turn_mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    turn_index = torch.tensor([[-1, 0, 0, -1, 1, 1], [-1, 0, -1, -1, -1, -1]])
    out = turn_rewards_to_tokens(turn_rewards, turn_mask, turn_index)
    assert out.tolist() == [[0, 0, 1, 0, 0, 2], [0, 3, 0, 0, 0, 0]]
    with pytest.raises(BatchShapeError, match="no model token"):
        turn_rewards_to_tokens(torch.tensor([[0.0, 5.0]]), torch.tensor([[1.0, 1.0]]), torch.tensor([[0, -1]]))


def test_gae_bad_hyperparameters():
    z = torch.zeros(1, 2)
    with pytest.raises(ConfigError, match="gamma"):
        token_gae(z, z, z, gamma=1.5)
    with pytest.raises(ConfigError, match="lam"):
        token_gae(z, z, z, lam=-0.1)
    with pytest.raises(BatchShapeError, match="values"):
        token_gae(z, torch.zeros(1, 3), z)


def _reference_gae(rewards, values, mask, gamma, lam, boot):
    """Plain Python: compress each row to its model tokens, run textbook GAE, scatter back."""
    adv_out, ret_out = [], []
    for r_row, v_row, m_row, b in zip(rewards, values, mask, boot, strict=True):
        pos = [t for t, m in enumerate(m_row) if m]
        a_row, g_row = [0.0] * len(m_row), [0.0] * len(m_row)
        running = 0.0
        for k in reversed(range(len(pos))):
            t = pos[k]
            next_v = v_row[pos[k + 1]] if k + 1 < len(pos) else b
            delta = r_row[t] + gamma * next_v - v_row[t]
            running = delta + gamma * lam * running
            a_row[t] = running
            g_row[t] = running + v_row[t]
        adv_out.append(a_row)
        ret_out.append(g_row)
    return adv_out, ret_out


@settings(max_examples=40, deadline=None, database=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    gamma=st.floats(0.0, 1.0),
    lam=st.floats(0.0, 1.0),
    b=st.integers(1, 4),
    seq_len=st.integers(1, 12),
)
def test_gae_matches_python_loop_reference(seed, gamma, lam, b, seq_len):
    rng = random.Random(seed)
    rewards = [[rng.uniform(-1, 1) for _ in range(seq_len)] for _ in range(b)]
    values = [[rng.uniform(-1, 1) for _ in range(seq_len)] for _ in range(b)]
    mask = [[int(rng.random() < 0.6) for _ in range(seq_len)] for _ in range(b)]
    boot = [rng.choice([0.0, rng.uniform(-1, 1)]) for _ in range(b)]
    adv, ret = token_gae(
        torch.tensor(rewards, dtype=F64), torch.tensor(values, dtype=F64), torch.tensor(mask, dtype=F64),
        gamma=gamma, lam=lam, bootstrap_value=torch.tensor(boot, dtype=F64),
    )
    ref_adv, ref_ret = _reference_gae(rewards, values, mask, gamma, lam, boot)
    torch.testing.assert_close(adv, torch.tensor(ref_adv, dtype=F64))
    torch.testing.assert_close(ret, torch.tensor(ref_ret, dtype=F64))
