"""From a list of :class:`~agentrl.trajectory.Trajectory` to the padded credit tensors."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from agentrl.errors import BatchShapeError
from agentrl.trajectory import Trajectory

__all__ = ["CreditBatch", "build_credit_batch", "observation_key", "observation_keys"]


@dataclass(frozen=True)
class CreditBatch:
    """A batch of B episodes, left-aligned and right-padded to L tokens and T turns.

    Shapes follow the conventions of :mod:`agentrl.credit`.
    """

    token_ids: torch.Tensor
    """[B, L] long: prompt, model and environment tokens; ``pad_id`` after the end."""
    attention_mask: torch.Tensor
    """[B, L] long: 1 on every real token (prompt, model, environment), 0 on padding."""
    mask: torch.Tensor
    """[B, L] float: 1 on model-generated tokens (the loss mask), 0 elsewhere."""
    logprobs: torch.Tensor
    """[B, L] float: the sampler's logprob of each model token, 0 elsewhere."""
    turn_index: torch.Tensor
    """[B, L] long: turn number of each model token, -1 elsewhere."""
    turn_rewards: torch.Tensor
    """[B, T] float: reward of each turn, 0 on padding turns."""
    turn_mask: torch.Tensor
    """[B, T] float: 1 on the episode's real turns."""
    turn_starts: torch.Tensor
    """[B, T] long: index of each turn's first model token (``Turn.start``), -1 on padding turns."""
    turn_ends: torch.Tensor
    """[B, T] long: one past each turn's last model token (``Turn.end``, exclusive), -1 on
    padding turns."""
    rewards: torch.Tensor
    """[B] float: return of each episode, the sum of its turn rewards (what the outcome
    estimators GRPO, RLOO, REINFORCE++... and GiGPO's episode level use)."""
    outcome: torch.Tensor
    """[B] float: the final turn's reward alone (0 for an episode without turns), apart
    from the shaping rewards of the turns before it (MT-GRPO's outcome)."""
    group_ids: torch.Tensor
    """[B] long: episodes of the same task share an id (numbered by first appearance)."""
    truncated: torch.Tensor
    """[B] bool: the episode was cut by a limit (bootstrap from a value where a critic exists)."""
    valid: torch.Tensor
    """[B] bool: False for an episode that ended in an error (``end_reason == "error"``).
    Estimators leave invalid episodes out of every baseline and statistic and give them
    advantage exactly 0; a learner should also drop them from the loss and its normaliser
    (``mask * valid[:, None]``)."""
    obs_keys: torch.Tensor
    """[B, T] long: per turn, a hash of the observation the turn acted on (the
    environment tokens right before it; see :func:`observation_keys`), -1 on padding
    turns. GiGPO's step groups are turns of one group with equal keys."""

    @property
    def batch_size(self) -> int:
        return int(self.mask.shape[0])


def build_credit_batch(
    trajectories: Sequence[Trajectory],
    pad_id: int = 0,
    dtype: torch.dtype = torch.float32,
) -> CreditBatch:
    """Stack trajectories into padded tensors (left-aligned, right-padded).

    Args:
        trajectories: the episodes, in batch order.
        pad_id: token id written after each episode's last token.
        dtype: floating dtype of the float tensors.

    Returns:
        A :class:`CreditBatch`. Group ids come from ``Trajectory.group_id`` (numbered by
        first appearance); an episode with an empty ``group_id`` forms a group of its own,
        so unrelated episodes are never pooled into one baseline by accident. An episode
        with ``end_reason == "error"`` is marked invalid (``valid`` False); its tensors
        are filled as for any other episode.

    Raises:
        BatchShapeError: if ``trajectories`` is empty.
    """
    if len(trajectories) == 0:
        raise BatchShapeError("build_credit_batch needs at least one trajectory, got none")
    b = len(trajectories)
    seq_len = max(len(t.token_ids) for t in trajectories)
    n_turns = max(max((t.num_turns for t in trajectories), default=0), 1)

    token_ids = torch.full((b, seq_len), pad_id, dtype=torch.long)
    attention = torch.zeros(b, seq_len, dtype=torch.long)
    mask = torch.zeros(b, seq_len, dtype=dtype)
    logprobs = torch.zeros(b, seq_len, dtype=dtype)
    turn_index = torch.full((b, seq_len), -1, dtype=torch.long)
    turn_rewards = torch.zeros(b, n_turns, dtype=dtype)
    turn_mask = torch.zeros(b, n_turns, dtype=dtype)
    turn_starts = torch.full((b, n_turns), -1, dtype=torch.long)
    turn_ends = torch.full((b, n_turns), -1, dtype=torch.long)
    outcome = torch.zeros(b, dtype=dtype)
    valid = torch.ones(b, dtype=torch.bool)
    group_ids = torch.empty(b, dtype=torch.long)
    truncated = torch.zeros(b, dtype=torch.bool)

    numbering: dict[str, int] = {}
    for i, traj in enumerate(trajectories):
        n = len(traj.token_ids)
        token_ids[i, :n] = torch.tensor(traj.token_ids, dtype=torch.long)
        attention[i, :n] = 1
        mask[i, :n] = torch.tensor(traj.loss_mask, dtype=dtype)
        logprobs[i, :n] = torch.tensor(traj.logprobs, dtype=dtype)
        turn_index[i, :n] = torch.tensor(traj.turn_index(), dtype=torch.long)
        k = traj.num_turns
        turn_rewards[i, :k] = torch.tensor(traj.rewards, dtype=dtype)
        turn_mask[i, :k] = 1.0
        if k:
            turn_starts[i, :k] = torch.tensor([t.start for t in traj.turns], dtype=torch.long)
            turn_ends[i, :k] = torch.tensor([t.end for t in traj.turns], dtype=torch.long)
            outcome[i] = float(traj.turns[-1].reward)
        valid[i] = traj.end_reason != "error"
        key = traj.group_id if traj.group_id else f"\x00solo{i}"
        group_ids[i] = numbering.setdefault(key, len(numbering))
        truncated[i] = traj.truncated and not traj.terminated

    return CreditBatch(
        token_ids=token_ids,
        attention_mask=attention,
        mask=mask,
        logprobs=logprobs,
        turn_index=turn_index,
        turn_rewards=turn_rewards,
        turn_mask=turn_mask,
        turn_starts=turn_starts,
        turn_ends=turn_ends,
        rewards=turn_rewards.sum(dim=1),
        outcome=outcome,
        group_ids=group_ids,
        truncated=truncated,
        valid=valid,
        obs_keys=observation_keys(trajectories),
    )


def observation_key(token_ids: Sequence[int]) -> int:
    """A stable 63-bit hash of a token sequence (same tokens, same key, across processes)."""
    digest = hashlib.blake2b(",".join(map(str, token_ids)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # fits a signed int64


def observation_keys(trajectories: Sequence[Trajectory]) -> torch.Tensor:
    """[B, T] long: per turn, the hash of the observation the turn acted on (GiGPO anchors).

    The observation of turn k is the tokens the environment added right before it:
    the prompt for turn 0, the tool results or user reply between turns k-1 and k
    otherwise. Padding turns hold -1.
    """
    if len(trajectories) == 0:
        raise BatchShapeError("observation_keys needs at least one trajectory, got none")
    n_turns = max(max((t.num_turns for t in trajectories), default=0), 1)
    keys = torch.full((len(trajectories), n_turns), -1, dtype=torch.long)
    for i, traj in enumerate(trajectories):
        prev_end = 0
        for k, turn in enumerate(traj.turns):
            keys[i, k] = observation_key(traj.token_ids[prev_end : turn.start])
            prev_end = turn.end
    return keys
