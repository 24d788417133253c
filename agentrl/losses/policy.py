"""Importance ratios, the PPO clipped surrogate and the clipped value loss (per token).

Compose them: ratio -> per-token loss -> :mod:`agentrl.losses.aggregate`::

    ratio = token_ratio(logp, old_logp)                 # or sequence_ratio(...) (GSPO)
    pg = ppo_clip_loss(ratio, adv, clip_low=0.2, clip_high=0.28)
    loss = token_mean(pg.loss, mask)
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from agentrl.errors import BatchShapeError, ConfigError

__all__ = [
    "token_ratio",
    "sequence_ratio",
    "gspo_token_ratio",
    "PolicyLoss",
    "ppo_clip_loss",
    "ValueLoss",
    "clipped_value_loss",
]


def _same_shape(**tensors: torch.Tensor) -> None:
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise BatchShapeError(f"tensors must share one shape, got {shapes}")


def token_ratio(logp: torch.Tensor, old_logp: torch.Tensor) -> torch.Tensor:
    """r_t = exp(logp_t - old_logp_t); [B, L] -> [B, L]. Gradient flows through ``logp``."""
    _same_shape(logp=logp, old_logp=old_logp)
    return torch.exp(logp - old_logp)


def sequence_ratio(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """GSPO (Zheng et al. 2025): s_i = exp( mean_{t in i} (logp_t - old_logp_t) ); -> [B, 1].

    The length-normalised sequence likelihood ratio; broadcast against [B, L]
    advantages. Clipping then accepts or rejects whole sequences.
    """
    _same_shape(logp=logp, old_logp=old_logp, mask=mask)
    m = mask.to(logp.dtype)
    mean_log = ((logp - old_logp) * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
    return torch.exp(mean_log)[:, None]


def gspo_token_ratio(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """GSPO-token: s_{i,t} = sg[s_i] * exp(logp_t - sg[logp_t]); [B, L].

    Its value equals :func:`sequence_ratio` on every token, but each token's gradient is
    s_i * grad logp_t, so per-token advantages (e.g. turn-level credit) can be used.
    """
    s = sequence_ratio(logp, old_logp, mask).detach()
    return s * torch.exp(logp - logp.detach())


class PolicyLoss(NamedTuple):
    """Per-token clipped surrogate loss and where each kind of clipping was active."""

    loss: torch.Tensor
    """[B, L] per-token loss (to aggregate with the mask)."""
    clipped_low: torch.Tensor
    """[B, L] bool: A < 0 and r < 1 - clip_low (the gradient is cut)."""
    clipped_high: torch.Tensor
    """[B, L] bool: A > 0 and r > 1 + clip_high (the gradient is cut)."""
    dual_clipped: torch.Tensor
    """[B, L] bool: A < 0 and r > dual_clip (the loss is capped at -dual_clip * A)."""


def ppo_clip_loss(
    ratio: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float | None = None,
    dual_clip: float | None = None,
) -> PolicyLoss:
    """PPO clipped surrogate with separate low/high clip (DAPO clip-higher) and dual-clip.

        l_t = max( -A r, -A clip(r, 1 - clip_low, 1 + clip_high) )
        if dual_clip c and A < 0:  l_t = min(l_t, -c A)        (Ye et al. 2020)

    ``ratio`` may be [B, L] or a sequence ratio [B, 1]; ``advantages`` [B, L]. The result
    broadcasts to [B, L]. ``clip_high`` defaults to ``clip_low``; ``dual_clip`` must be > 1.
    """
    if clip_high is None:
        clip_high = clip_low
    if not 0.0 <= clip_low < 1.0:
        raise ConfigError(f"clip_low must be in [0, 1), got {clip_low}")
    if clip_high < 0.0:
        raise ConfigError(f"clip_high must be >= 0, got {clip_high}")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ConfigError(f"dual_clip must be > 1 (typically 3), got {dual_clip}")
    if ratio.dim() != 2 or advantages.dim() != 2 or ratio.shape[0] != advantages.shape[0]:
        raise BatchShapeError(
            f"ratio [B, L] or [B, 1] and advantages [B, L] expected, got {list(ratio.shape)} "
            f"and {list(advantages.shape)}"
        )
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(unclipped, clipped)
    neg = advantages < 0
    dual = torch.zeros_like(loss, dtype=torch.bool)
    if dual_clip is not None:
        cap = -dual_clip * advantages
        dual = neg & (loss > cap)
        loss = torch.where(neg, torch.minimum(loss, cap), loss)
    r = ratio.expand_as(loss)
    return PolicyLoss(
        loss=loss,
        clipped_low=neg & (r < 1.0 - clip_low),
        clipped_high=(advantages > 0) & (r > 1.0 + clip_high),
        dual_clipped=dual,
    )


class ValueLoss(NamedTuple):
    """Per-token value loss and where the clipped branch was the larger one."""

    loss: torch.Tensor
    """[B, L] per-token loss."""
    clipped: torch.Tensor
    """[B, L] bool: the clipped prediction gave the larger error."""


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    clip: float | None = 0.2,
) -> ValueLoss:
    """PPO value loss: 0.5 * max( (V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2 ).

    With ``clip=None`` it is 0.5 * (V - R)^2. All tensors [B, L]; ``old_values`` are the
    critic's values at rollout time, ``returns`` the targets (e.g. from GAE).
    """
    _same_shape(values=values, old_values=old_values, returns=returns)
    err = (values - returns) ** 2
    if clip is None:
        return ValueLoss(0.5 * err, torch.zeros_like(err, dtype=torch.bool))
    if clip <= 0:
        raise ConfigError(f"value clip must be positive or None, got {clip}")
    v_clipped = old_values + (values - old_values).clamp(-clip, clip)
    err_clipped = (v_clipped - returns) ** 2
    return ValueLoss(0.5 * torch.maximum(err, err_clipped), err_clipped > err)
