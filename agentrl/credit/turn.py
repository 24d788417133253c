"""Turn-level estimators: credit per assistant turn, broadcast to the turn's tokens.

Inputs follow :mod:`agentrl.credit`: ``turn_rewards``/``turn_mask`` [B, T],
``turn_index`` [B, L] (-1 off model tokens). Outputs are [B, L], 0 off model tokens.
Episodes may have different numbers of turns; padding turns (turn_mask 0) are ignored.
"""

from __future__ import annotations

import torch

from agentrl.credit._ops import (
    broadcast_turns,
    check_shape,
    group_normalize,
    masked_backward_scan,
    row_valid,
    turn_bounds,
)
from agentrl.credit.gae import token_gae
from agentrl.errors import BatchShapeError, ConfigError

__all__ = [
    "turn_returns",
    "turn_return_advantages",
    "bilevel_gae",
    "mt_grpo_advantages",
    "gigpo_advantages",
]


def _check_turns(
    turn_rewards: torch.Tensor,
    turn_mask: torch.Tensor,
    turn_index: torch.Tensor | None,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Check shapes and finiteness (on valid rows); return valid as [B] bool."""
    if turn_rewards.dim() != 2:
        raise BatchShapeError(f"turn_rewards must be [B, T], got {list(turn_rewards.shape)}")
    check_shape("turn_mask", turn_mask, tuple(turn_rewards.shape))
    if turn_index is not None and (turn_index.dim() != 2 or turn_index.shape[0] != turn_rewards.shape[0]):
        raise BatchShapeError(
            f"turn_index must be [{turn_rewards.shape[0]}, L], got {list(turn_index.shape)}"
        )
    ok = row_valid(valid, turn_rewards.shape[0], turn_rewards.device)
    if not torch.isfinite(turn_rewards[ok]).all():
        raise BatchShapeError("turn_rewards contain NaN or inf")
    return ok


def _valid_turns(turn_mask: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """[B, T] bool: real turns of valid episodes."""
    return (turn_mask > 0) & ok[:, None]


def _check_gamma(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1], got {value}")


@torch.no_grad()
def turn_returns(
    turn_rewards: torch.Tensor,
    turn_mask: torch.Tensor,
    gamma: float = 1.0,
    bootstrap_value: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Discounted reward-to-go over turns: G_k = r_k + gamma * G_{k+1}; [B, T] -> [B, T].

    After the last real turn G is ``bootstrap_value`` [B] (0 when None). 0 on padding
    turns and on invalid episodes (``valid`` [B] bool False; None = all valid).
    """
    ok = _check_turns(turn_rewards, turn_mask, None, valid)
    _check_gamma("gamma", gamma)
    if bootstrap_value is not None:
        check_shape("bootstrap_value", bootstrap_value, (turn_rewards.shape[0],))
    return masked_backward_scan(turn_rewards, _valid_turns(turn_mask, ok), gamma, bootstrap=bootstrap_value)


@torch.no_grad()
def turn_return_advantages(
    turn_rewards: torch.Tensor,
    turn_mask: torch.Tensor,
    turn_index: torch.Tensor,
    gamma: float = 1.0,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """A_t = G_{k(t)}: every token of turn k gets the turn's discounted return-to-go.

    Plain REINFORCE at turn granularity (no baseline): a turn is credited only with
    rewards that come at or after it. [B, T], [B, T], [B, L] -> [B, L]. Invalid
    episodes (``valid`` False) get 0.
    """
    ok = _check_turns(turn_rewards, turn_mask, turn_index, valid)
    return broadcast_turns(turn_returns(turn_rewards, turn_mask, gamma, valid=ok), turn_index)


@torch.no_grad()
def bilevel_gae(
    turn_rewards: torch.Tensor,
    turn_mask: torch.Tensor,
    turn_index: torch.Tensor,
    values: torch.Tensor,
    gamma_turn: float = 1.0,
    lam_turn: float = 0.95,
    gamma_token: float = 1.0,
    lam_token: float = 1.0,
    bootstrap_value: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bi-level GAE: GAE over turns with per-turn values, then GAE inside each turn.

    Turn level (V_k = the critic's value at turn k's first token)::

        delta_k = r_k + gamma_turn * V_{k+1} - V_k,    A_k = delta_k + gamma_turn * lam_turn * A_{k+1}
        G_k     = A_k + V_k                             (turn target; V after the last turn: bootstrap)

    Token level, inside turn k with tokens t = s..e (t' the next token of the same turn)::

        delta_t = gamma_token * V_{t'} - V_t   (t < e),     delta_e = G_k - V_e
        A_t     = delta_t + gamma_token * lam_token * A_{t'},   R_t = A_t + V_t

    No token-level credit crosses a turn boundary: each turn is scored by the turn
    critic, and its tokens share that score. With gamma_token = lam_token = 1 the sum
    telescopes to A_t = G_k - V_t, so the first token of turn k gets exactly A_k.

    Args:
        turn_rewards, turn_mask: [B, T].
        turn_index: [B, L] turn of each model token, -1 elsewhere.
        values: [B, L] critic values.
        bootstrap_value: [B] value after the last turn for truncated episodes (0 if None).
        valid: [B] bool, False for errored episodes (None = all valid): they get 0.

    Returns:
        (advantages [B, L], returns [B, L]), 0 off model tokens and on invalid rows.
    """
    ok = _check_turns(turn_rewards, turn_mask, turn_index, valid)
    check_shape("values", values, tuple(turn_index.shape))
    for name, v in (("gamma_turn", gamma_turn), ("lam_turn", lam_turn),
                    ("gamma_token", gamma_token), ("lam_token", lam_token)):
        _check_gamma(name, v)
    b, n_turns = turn_rewards.shape
    first, last = turn_bounds(turn_index, n_turns)  # [B, T]
    tm = (_valid_turns(turn_mask, ok) & (first >= 0)).to(values.dtype)
    v_turn = torch.where(tm > 0, torch.gather(values, 1, first.clamp(min=0)), torch.zeros_like(tm))  # [B, T]
    r_turn = torch.where(tm > 0, turn_rewards.to(values.dtype), torch.zeros_like(tm))
    _, g_turn = token_gae(r_turn, v_turn, tm, gamma_turn, lam_turn, bootstrap_value)

    token_mask = (turn_index >= 0) & ok[:, None]
    is_last = torch.zeros_like(values)
    target = torch.zeros_like(values)  # G_k placed on turn k's last token
    rows = torch.arange(b, device=values.device)[:, None].expand(b, n_turns)
    on = tm > 0
    is_last[rows[on], last[on]] = 1.0
    target[rows[on], last[on]] = g_turn[on]
    # At a turn's last token the chain restarts from the turn target (cut): no
    # token-level credit crosses a turn boundary.
    adv = masked_backward_scan(target, token_mask, gamma_token, lam_token, values=values, cut=is_last)
    return adv, torch.where(token_mask, adv + values, torch.zeros_like(adv))


def _turn_positions_normalize(
    x: torch.Tensor,
    valid: torch.Tensor,
    group_ids: torch.Tensor,
    keys: torch.Tensor,
    scale_by_std: bool,
    eps: float,
) -> torch.Tensor:
    """Normalise x [B, T] within groups of equal (group id, key) over valid entries; 0 elsewhere."""
    b, n_turns = x.shape
    gid = group_ids[:, None].expand(b, n_turns)
    pairs = torch.stack([gid[valid], keys[valid]], dim=1)  # [N, 2]
    out = torch.zeros_like(x)
    if pairs.shape[0] == 0:
        return out
    _, sub_ids = torch.unique(pairs, dim=0, return_inverse=True)
    out[valid] = group_normalize(x[valid], sub_ids, scale_by_std=scale_by_std, eps=eps)
    return out


@torch.no_grad()
def mt_grpo_advantages(
    turn_rewards: torch.Tensor,
    turn_mask: torch.Tensor,
    outcome: torch.Tensor,
    group_ids: torch.Tensor,
    turn_index: torch.Tensor,
    outcome_coef: float = 1.0,
    scale_by_std: bool = True,
    eps: float = 1e-6,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """MT-GRPO-style turn-level credit (Zeng et al. 2025).

    Group-normalise each turn position's reward over the group members that reached
    that turn, and the outcome over the group::

        At_k = (r_k - mean_{g,k}) / (std_{g,k} + eps),   Ao = (o - mean_g) / (std_g + eps)
        A_t  = At_k + c_k * Ao    for t in turn k,  c_k = outcome_coef for earlier turns, 1 for the last

    With two turns whose last-turn reward is constant this is the paper's estimator
    (first turn At_1 + lambda * Ao, final turn Ao). Groups of one and all-equal rewards
    give 0. ``scale_by_std=False`` drops the std (Dr.GRPO style). Invalid episodes
    (``valid`` False) are left out of every statistic and get 0.

    Args:
        turn_rewards, turn_mask: [B, T] intermediate (per-turn) rewards.
        outcome: [B] outcome reward of each episode.
        group_ids: [B]; turn_index: [B, L].
        valid: [B] bool (None = all valid).

    Returns:
        advantages [B, L].
    """
    ok = _check_turns(turn_rewards, turn_mask, turn_index, valid)
    check_shape("outcome", outcome, (turn_rewards.shape[0],))
    check_shape("group_ids", group_ids, (turn_rewards.shape[0],))
    if not torch.isfinite(outcome[ok]).all():
        raise BatchShapeError("outcome contains NaN or inf")
    b, n_turns = turn_rewards.shape
    on = _valid_turns(turn_mask, ok)
    position = torch.arange(n_turns, device=turn_rewards.device).expand(b, n_turns)
    a_turn = _turn_positions_normalize(turn_rewards, on, group_ids, position, scale_by_std, eps)
    a_out = group_normalize(outcome.to(turn_rewards.dtype), group_ids, scale_by_std=scale_by_std, eps=eps,
                            valid=ok)
    n_real = on.sum(dim=1, keepdim=True)  # [B, 1]
    coef = torch.where(position == n_real - 1, 1.0, outcome_coef).to(turn_rewards.dtype)
    per_turn = torch.where(on, a_turn + coef * a_out[:, None], torch.zeros_like(a_turn))
    return broadcast_turns(per_turn, turn_index)


@torch.no_grad()
def gigpo_advantages(
    outcome: torch.Tensor,
    group_ids: torch.Tensor,
    turn_rewards: torch.Tensor,
    turn_mask: torch.Tensor,
    obs_keys: torch.Tensor,
    turn_index: torch.Tensor,
    step_coef: float = 1.0,
    gamma: float = 0.95,
    scale_by_std: bool = True,
    eps: float = 1e-6,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """GiGPO-style two-level groups (Feng et al. 2025).

    Episode level: AE_i = (o_i - mean_g) / (std_g + eps). Step level: turns of the same
    group whose observation keys are equal (the same env state reached by different
    episodes, an "anchor state") form a step group; each turn's discounted return-to-go
    G_k = sum_{j>=k} gamma^(j-k) r_j is normalised within its step group::

        AS_k = (G_k - mean_step(G)) / (std_step(G) + eps),   A_t = AE_i + step_coef * AS_k(t)

    A turn whose observation no other group member saw gets AS = 0 (episode credit only).
    Invalid episodes (``valid`` False) join neither episode nor step groups and get 0.

    Args:
        outcome: [B] episode rewards; group_ids: [B].
        turn_rewards, turn_mask: [B, T] per-turn rewards.
        obs_keys: [B, T] long, a hash of the observation each turn acted on
            (see :func:`agentrl.credit.observation_keys`); ignored on padding turns.
        turn_index: [B, L].
        valid: [B] bool (None = all valid).

    Returns:
        advantages [B, L].
    """
    ok = _check_turns(turn_rewards, turn_mask, turn_index, valid)
    check_shape("outcome", outcome, (turn_rewards.shape[0],))
    check_shape("group_ids", group_ids, (turn_rewards.shape[0],))
    check_shape("obs_keys", obs_keys, tuple(turn_rewards.shape))
    _check_gamma("gamma", gamma)
    if not torch.isfinite(outcome[ok]).all():
        raise BatchShapeError("outcome contains NaN or inf")
    on = _valid_turns(turn_mask, ok)
    a_ep = group_normalize(outcome.to(turn_rewards.dtype), group_ids, scale_by_std=scale_by_std, eps=eps,
                           valid=ok)
    g = turn_returns(turn_rewards, turn_mask, gamma, valid=ok)
    a_step = _turn_positions_normalize(g, on, group_ids, obs_keys.long(), scale_by_std, eps)
    per_turn = torch.where(on, a_ep[:, None] + step_coef * a_step, torch.zeros_like(a_step))
    return broadcast_turns(per_turn, turn_index)
