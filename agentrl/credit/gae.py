"""Token-level GAE with a critic, skipping environment tokens."""

from __future__ import annotations

import torch

from agentrl.credit._ops import check_shape, masked_backward_scan, row_valid, turn_bounds
from agentrl.errors import BatchShapeError, ConfigError

__all__ = ["token_gae", "turn_rewards_to_tokens"]


def _check_gamma_lam(gamma: float, lam: float) -> None:
    if not 0.0 <= gamma <= 1.0:
        raise ConfigError(f"gamma must be in [0, 1], got {gamma}")
    if not 0.0 <= lam <= 1.0:
        raise ConfigError(f"lam must be in [0, 1], got {lam}")


@torch.no_grad()
def turn_rewards_to_tokens(
    turn_rewards: torch.Tensor, turn_mask: torch.Tensor, turn_index: torch.Tensor
) -> torch.Tensor:
    """[B, T] turn rewards -> [B, L] token rewards: each turn's reward on its last model token.

    A turn with a reward but no model token (cannot happen for a valid Trajectory) is an error.
    """
    b, t = turn_rewards.shape
    check_shape("turn_mask", turn_mask, (b, t))
    if turn_index.dim() != 2 or turn_index.shape[0] != b:
        raise BatchShapeError(f"turn_index must be [{b}, L], got {list(turn_index.shape)}")
    _, last = turn_bounds(turn_index, t)  # [B, T]
    r = turn_rewards * turn_mask.to(turn_rewards.dtype)
    if bool(((last < 0) & (r != 0)).any()):
        raise BatchShapeError("a turn with a nonzero reward has no model token in turn_index")
    out = torch.zeros(turn_index.shape, dtype=turn_rewards.dtype, device=turn_rewards.device)
    ok = last >= 0
    rows = torch.arange(b, device=out.device)[:, None].expand(b, t)
    out[rows[ok], last[ok]] = r[ok]
    return out


@torch.no_grad()
def token_gae(
    token_rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
    bootstrap_value: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the model tokens of each episode.

    Going backwards over the model tokens t (mask 1), with t' the next model token::

        delta_t = r_t + gamma * V_{t'} - V_t
        A_t     = delta_t + gamma * lam * A_{t'}
        R_t     = A_t + V_t                      (the critic's target)

    Environment tokens and padding (mask 0) are skipped: the carried value V_{t'} and the
    running advantage A_{t'} pass across them unchanged and undiscounted, so a tool
    result between two turns costs no discount step and the critic is never asked
    about tokens the model did not choose. After the last model token, V is
    ``bootstrap_value`` [B] (use the critic's value of the final state for a truncated
    episode, 0 for a terminated one; all 0 when None).

    Args:
        token_rewards: [B, L] reward per token (see :func:`turn_rewards_to_tokens`).
        values: [B, L] critic values V_t (only masked positions are read).
        mask: [B, L] 1 on model tokens.
        gamma, lam: discount and GAE lambda, both in [0, 1].
        bootstrap_value: [B] value after the episode's last token, or None.
        valid: [B] bool, False for errored episodes (None = all valid): their
            advantages and returns are exactly 0 and their rewards are never read.

    Returns:
        (advantages [B, L], returns [B, L]), both 0 off the mask and on invalid rows.
    """
    _check_gamma_lam(gamma, lam)
    check_shape("values", values, tuple(token_rewards.shape))
    check_shape("mask", mask, tuple(token_rewards.shape))
    b = token_rewards.shape[0]
    if bootstrap_value is not None:
        check_shape("bootstrap_value", bootstrap_value, (b,))
    ok = row_valid(valid, b, token_rewards.device)
    on_mask = (mask.to(values.dtype) > 0) & ok[:, None]
    adv = masked_backward_scan(token_rewards, on_mask, gamma, lam, values=values, bootstrap=bootstrap_value)
    return adv, torch.where(on_mask, adv + values, torch.zeros_like(adv))
