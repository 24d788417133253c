"""Trajectory-level (outcome) estimators: one scalar reward per episode -> per-token advantages.

All functions take the episode rewards ``rewards`` [B] and the loss ``mask`` [B, L] and
return advantages [B, L] that are 0 off the mask. None of them carries gradient
(rewards are data).
"""

from __future__ import annotations

import torch

from agentrl.credit._ops import (
    broadcast_to_tokens,
    check_shape,
    group_normalize,
    group_stats,
    masked_whiten,
    reverse_discounted_cumsum,
    row_valid,
)
from agentrl.credit.batch import CreditBatch
from agentrl.errors import BatchShapeError, ConfigError

__all__ = [
    "grpo_advantages",
    "dr_grpo_advantages",
    "rloo_advantages",
    "remax_advantages",
    "kl_shaped_token_returns",
    "reinforce_pp_advantages",
    "reinforce_pp_baseline_advantages",
    "grpo_from_batch",
]


def _check(
    rewards: torch.Tensor,
    mask: torch.Tensor,
    group_ids: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Check shapes and finiteness (of valid episodes' rewards); return valid as [B] bool."""
    if mask.dim() != 2:
        raise BatchShapeError(f"mask must be [B, L], got shape {list(mask.shape)}")
    check_shape("rewards", rewards, (mask.shape[0],))
    if group_ids is not None:
        check_shape("group_ids", group_ids, (mask.shape[0],))
    ok = row_valid(valid, mask.shape[0], mask.device)
    if not torch.isfinite(rewards[ok]).all():
        raise BatchShapeError("rewards contain NaN or inf; fix the reward function or drop those episodes")
    return ok


def _to_tokens(adv: torch.Tensor, ok: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B] -> [B, L] on the model tokens, exactly 0 on invalid rows."""
    adv = torch.where(ok, adv, torch.zeros_like(adv))
    return broadcast_to_tokens(adv, mask)


@torch.no_grad()
def grpo_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    mask: torch.Tensor,
    eps: float = 1e-6,
    unbiased: bool = True,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """GRPO (Shao et al. 2024): A_i = (r_i - mean_g(r)) / (std_g(r) + eps) on every token of i.

    ``std_g`` is the group's sample std (``unbiased=True``, Bessel's n-1 as in TRL and
    verl) or the population std. A group of size one or with all-equal rewards gets
    A = 0 exactly (no NaN). rewards [B], group_ids [B], mask [B, L] -> [B, L].
    ``valid`` [B] bool (None = all): invalid (errored) episodes are left out of the
    group's mean, std and size, and get A = 0.
    """
    ok = _check(rewards, mask, group_ids, valid)
    adv = group_normalize(rewards, group_ids, scale_by_std=True, eps=eps, unbiased=unbiased, valid=ok)
    return _to_tokens(adv, ok, mask)


@torch.no_grad()
def dr_grpo_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    mask: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dr.GRPO (Liu et al. 2025): A_i = r_i - mean_g(r), no std division.

    Dropping the std removes the bias towards groups whose rewards vary little (too easy
    or too hard prompts). [B], [B], [B, L] -> [B, L]. Invalid episodes (``valid`` False)
    are left out of the mean and get 0.
    """
    ok = _check(rewards, mask, group_ids, valid)
    return _to_tokens(group_normalize(rewards, group_ids, scale_by_std=False, valid=ok), ok, mask)


@torch.no_grad()
def rloo_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    mask: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """RLOO (Ahmadian et al. 2024): A_i = r_i - (sum_{j in g, j != i} r_j) / (n_g - 1).

    The leave-one-out baseline is independent of sample i, so the estimator is unbiased.
    Equals n_g / (n_g - 1) * (r_i - mean_g). A group of size one has no baseline and gets
    A = 0. [B], [B], [B, L] -> [B, L]. Invalid episodes (``valid`` False) are not
    members: n_g counts the valid ones, and they get 0.
    """
    ok = _check(rewards, mask, group_ids, valid)
    if not rewards.is_floating_point():
        rewards = rewards.to(torch.get_default_dtype())
    mean, _, count = group_stats(rewards, group_ids, valid=ok)
    loo = count * mean - rewards  # sum of the other (valid) members
    adv = torch.where(ok & (count > 1), rewards - loo / (count - 1.0).clamp(min=1.0), torch.zeros_like(rewards))
    return _to_tokens(adv, ok, mask)


@torch.no_grad()
def remax_advantages(
    rewards: torch.Tensor,
    greedy_rewards: torch.Tensor,
    mask: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """ReMax (Li et al. 2023): A_i = r_i - r_greedy_i, the reward of the greedy answer to the
    same prompt as baseline. [B], [B], [B, L] -> [B, L]. Invalid episodes get 0 (mark an
    episode invalid too when its greedy rollout errored)."""
    ok = _check(rewards, mask, valid=valid)
    check_shape("greedy_rewards", greedy_rewards, (mask.shape[0],))
    if not torch.isfinite(greedy_rewards[ok]).all():
        raise BatchShapeError("greedy_rewards contain NaN or inf; mark those episodes invalid")
    return _to_tokens(rewards - greedy_rewards, ok, mask)


@torch.no_grad()
def kl_shaped_token_returns(
    rewards: torch.Tensor,
    mask: torch.Tensor,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    gamma: float = 1.0,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Token returns with KL-shaped rewards (REINFORCE++, Hu 2025).

    r_t = -kl_coef * kl_t on every model token, plus the outcome reward on the episode's
    last model token; G_t = r_t + gamma * G_{t'} with t' the next *model* token
    (environment tokens are skipped, not discounted). ``kl`` [B, L] is a per-token KL
    estimate (e.g. :func:`agentrl.losses.kl_k1` of the sampling and reference logprobs).
    Returns G [B, L], 0 off the mask and on invalid rows (``valid`` False).
    """
    ok = _check(rewards, mask, valid=valid)
    if not rewards.is_floating_point():
        rewards = rewards.to(torch.get_default_dtype())
    m = mask.to(rewards.dtype) * ok[:, None].to(rewards.dtype)
    rewards = torch.where(ok, rewards, torch.zeros_like(rewards))
    token_r = torch.zeros_like(m)
    if kl is not None:
        check_shape("kl", kl, tuple(mask.shape))
        token_r = torch.where(m > 0, -kl_coef * kl.to(m.dtype), torch.zeros_like(m))
    pos = torch.arange(m.shape[1], device=m.device).expand_as(m)
    last = torch.where(m > 0, pos, torch.full_like(pos, -1)).amax(dim=1)  # [B]
    has_tokens = last >= 0
    rows = torch.arange(m.shape[0], device=m.device)[has_tokens]
    token_r[rows, last[has_tokens]] += rewards[has_tokens]
    return reverse_discounted_cumsum(token_r, m, gamma)


@torch.no_grad()
def reinforce_pp_advantages(
    rewards: torch.Tensor,
    mask: torch.Tensor,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    gamma: float = 1.0,
    eps: float = 1e-8,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """REINFORCE++: A_t = whiten_batch(G_t), G from :func:`kl_shaped_token_returns`.

    Whitening is over all model tokens of the valid episodes of the batch:
    (G - mean) / (std + eps), the global baseline of REINFORCE++ (no critic, no groups).
    Invalid episodes do not enter the mean or std and get 0. [B], [B, L] -> [B, L].
    """
    if gamma < 0 or gamma > 1:
        raise ConfigError(f"gamma must be in [0, 1], got {gamma}")
    ok = _check(rewards, mask, valid=valid)
    returns = kl_shaped_token_returns(rewards, mask, kl, kl_coef, gamma, valid=ok)
    return masked_whiten(returns, mask * ok[:, None].to(mask.dtype), eps)


@torch.no_grad()
def reinforce_pp_baseline_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    mask: torch.Tensor,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    gamma: float = 1.0,
    eps: float = 1e-8,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """REINFORCE++-baseline: r'_i = r_i - mean_g(r), then :func:`reinforce_pp_advantages` on r'.

    The group mean removes the prompt's difficulty; batch whitening (not the group std)
    sets the scale, which is more stable than GRPO's per-group std on small groups.
    Invalid episodes are left out of the group means and the whitening, and get 0.
    """
    ok = _check(rewards, mask, group_ids, valid)
    centered = group_normalize(rewards, group_ids, scale_by_std=False, valid=ok)
    return reinforce_pp_advantages(centered, mask, kl, kl_coef, gamma, eps, valid=ok)


def grpo_from_batch(batch: CreditBatch, eps: float = 1e-6) -> torch.Tensor:
    """GRPO advantages straight from a :class:`CreditBatch` (outcome = sum of turn rewards;
    invalid episodes excluded, advantage 0)."""
    return grpo_advantages(batch.rewards, batch.group_ids, batch.mask, eps=eps, valid=batch.valid)
