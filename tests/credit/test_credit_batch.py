"""build_credit_batch, observation_keys and the small tensor helpers."""

import pytest
import torch

from agentrl.credit import (
    broadcast_turns,
    build_credit_batch,
    group_normalize,
    group_stats,
    grpo_from_batch,
    observation_key,
    observation_keys,
    turn_bounds,
)
from agentrl.errors import BatchShapeError
from agentrl.trajectory import Trajectory, Turn


def _traj(token_ids, loss_mask, turns, group_id="g", truncated=False, terminated=True, prompt_len=2):
    logprobs = [-0.5 * m for m in loss_mask]
    return Trajectory(
        env_id="agentrl/Test-v0",
        token_ids=token_ids,
        loss_mask=loss_mask,
        logprobs=logprobs,
        prompt_len=prompt_len,
        turns=turns,
        group_id=group_id,
        truncated=truncated,
        terminated=terminated,
        end_reason="max_turns" if truncated else "terminated",
    )


def _three():
    # Episode 0: prompt(2) | turn0 (2 tokens) | env (1) | turn1 (1 token)      -> 6 tokens, 2 turns
    a = _traj([10, 11, 20, 21, 30, 22], [0, 0, 1, 1, 0, 1],
              [Turn(2, 4, reward=0.5), Turn(5, 6, reward=1.0)], group_id="task-A")
    # Episode 1: prompt(2) | turn0 (1 token)                                     -> 3 tokens, 1 turn
    b = _traj([10, 11, 23], [0, 0, 1], [Turn(2, 3, reward=2.0)], group_id="task-B",
              truncated=True, terminated=False)
    # Episode 2: same task as episode 0, prompt(2) | turn0 (2) | env (2) | turn1 (1) | turn2 (1)
    c = _traj([10, 11, 24, 25, 30, 31, 26, 27], [0, 0, 1, 1, 0, 0, 1, 1],
              [Turn(2, 4, reward=0.0), Turn(6, 7, reward=0.0), Turn(7, 8, reward=3.0)], group_id="task-A")
    return [a, b, c]


def test_build_credit_batch_pads_right_and_aligns_left():
    batch = build_credit_batch(_three(), pad_id=-7)
    assert batch.batch_size == 3
    # L = 8 (longest episode), T = 3 (most turns).
    assert batch.token_ids.tolist() == [
        [10, 11, 20, 21, 30, 22, -7, -7],
        [10, 11, 23, -7, -7, -7, -7, -7],
        [10, 11, 24, 25, 30, 31, 26, 27],
    ]
    assert batch.attention_mask.tolist() == [[1] * 6 + [0] * 2, [1] * 3 + [0] * 5, [1] * 8]
    assert batch.mask.tolist() == [
        [0, 0, 1, 1, 0, 1, 0, 0],
        [0, 0, 1, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 0, 0, 1, 1],
    ]
    assert batch.turn_index.tolist() == [
        [-1, -1, 0, 0, -1, 1, -1, -1],
        [-1, -1, 0, -1, -1, -1, -1, -1],
        [-1, -1, 0, 0, -1, -1, 1, 2],
    ]
    assert batch.turn_rewards.tolist() == [[0.5, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0]]
    assert batch.turn_mask.tolist() == [[1, 1, 0], [1, 0, 0], [1, 1, 1]]
    # outcome = sum of turn rewards: 0.5 + 1.0, 2.0, 0 + 0 + 3.0
    assert batch.rewards.tolist() == [1.5, 2.0, 3.0]
    assert batch.group_ids.tolist() == [0, 1, 0]  # task-A, task-B, task-A
    assert batch.truncated.tolist() == [False, True, False]
    assert batch.logprobs[0].tolist() == [0, 0, -0.5, -0.5, 0, -0.5, 0, 0]


def test_empty_group_ids_are_never_pooled():
    trajs = [_traj([1, 2, 3], [0, 0, 1], [Turn(2, 3, 1.0)], group_id="") for _ in range(3)]
    trajs.append(_traj([1, 2, 3], [0, 0, 1], [Turn(2, 3, 1.0)], group_id="x"))
    assert build_credit_batch(trajs).group_ids.tolist() == [0, 1, 2, 3]


def test_build_credit_batch_rejects_empty_list():
    with pytest.raises(BatchShapeError, match="at least one"):
        build_credit_batch([])


def test_observation_keys_hash_the_env_tokens_before_each_turn():
    a, b, c = _three()
    keys = observation_keys([a, b, c])
    assert keys.shape == (3, 3)
    prompt = observation_key([10, 11])
    # Turn 0 of every episode acted on the same prompt [10, 11].
    assert keys[:, 0].tolist() == [prompt, prompt, prompt]
    # Episode 0 turn 1 saw [30]; episode 2 turn 1 saw [30, 31]; episode 2 turn 2 saw [] (no env tokens).
    assert keys[0, 1] == observation_key([30])
    assert keys[2, 1] == observation_key([30, 31])
    assert keys[2, 1] != keys[0, 1]
    assert keys[2, 2] == observation_key([])
    assert keys[0, 2] == -1 and keys[1, 1] == -1 and keys[1, 2] == -1  # padding turns
    assert observation_key([1, 2]) != observation_key([12])  # separator keeps tokens apart


def test_turn_bounds_first_and_last_token_of_each_turn():
    ti = torch.tensor([[-1, 0, 0, -1, 1, 1, 1], [-1, -1, 0, -1, -1, -1, -1]])
    first, last = turn_bounds(ti, 2)
    assert first.tolist() == [[1, 4], [2, -1]]
    assert last.tolist() == [[2, 6], [2, -1]]


def test_broadcast_turns_and_bad_turn_index():
    per_turn = torch.tensor([[10.0, 20.0], [30.0, 0.0]])
    ti = torch.tensor([[-1, 0, 1, 1], [0, 0, -1, -1]])
    assert broadcast_turns(per_turn, ti).tolist() == [[0, 10, 20, 20], [30, 30, 0, 0]]
    with pytest.raises(BatchShapeError, match="turn 2"):
        broadcast_turns(per_turn, torch.tensor([[2, -1, -1, -1], [0, 0, 0, 0]]))


def test_group_stats_and_normalize_by_hand():
    x = torch.tensor([1.0, 0.0, 1.0, 5.0, 2.0, 2.0], dtype=torch.float64)
    g = torch.tensor([7, 7, 7, 3, 9, 9])  # ids need not be contiguous
    mean, std, count = group_stats(x, g)
    # group 7: mean 2/3, sample var ((1/3)^2 + (2/3)^2 + (1/3)^2) / 2 = 1/3
    assert mean.tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 5.0, 2.0, 2.0])
    assert std.tolist() == pytest.approx([(1 / 3) ** 0.5] * 3 + [0.0, 0.0, 0.0])
    assert count.tolist() == [3, 3, 3, 1, 2, 2]
    z = group_normalize(x, g, eps=0.0)
    s = (1 / 3) ** 0.5
    assert z.tolist() == pytest.approx([(1 / 3) / s, (-2 / 3) / s, (1 / 3) / s, 0.0, 0.0, 0.0])
    assert torch.isfinite(z).all()


def test_trajectories_straight_to_grpo_advantages():
    batch = build_credit_batch(_three())
    adv = grpo_from_batch(batch, eps=0.0)
    # group task-A = episodes 0 and 2 with outcomes 1.5 and 3.0: mean 2.25, sample std
    # sqrt((0.75^2 + 0.75^2) / 1) = 1.06066 -> -0.7071 and +0.7071; task-B alone -> 0
    a = 0.75 / (2 * 0.75**2) ** 0.5
    expected = torch.tensor([-a, 0.0, a])[:, None] * batch.mask
    torch.testing.assert_close(adv, expected)
