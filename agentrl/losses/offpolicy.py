"""Off-policy correction for the sampler/learner mismatch (vLLM logprobs vs the trainer's).

The rollout engine samples from pi_sampler, but the loss is computed with the learner's
pi_learner (same weights, different kernels and precision, or stale weights). Truncated
importance sampling (TIS) reweights each token (or sequence) by
w = min(pi_learner / pi_sampler, cap); tokens (or sequences) whose ratio falls outside a
trust band are masked out entirely. Multiply the per-token policy loss by
``weights`` (it is 0 where masked) and aggregate with ``keep * mask``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from agentrl.errors import BatchShapeError, ConfigError

__all__ = ["ISCorrection", "token_is_correction", "sequence_is_correction"]


@dataclass(frozen=True)
class ISCorrection:
    """Importance weights for the sampler/learner mismatch, and their statistics."""

    weights: torch.Tensor
    """[B, L] detached weight per token: min(ratio, cap), 0 where masked or off the mask."""
    keep: torch.Tensor
    """[B, L] float: 1 where the token stays in the loss (model token inside the band)."""
    stats: dict[str, float]
    """Ratio statistics over model tokens (token level) or sequences (sequence level):
    ratio_mean/min/max, truncated_frac, masked_frac, mismatch_kl (k3 estimate of
    KL(sampler || learner) per token)."""


def _check(logp: torch.Tensor, sampler_logp: torch.Tensor, mask: torch.Tensor,
           cap: float | None, band: tuple[float, float] | None) -> None:
    if not (logp.shape == sampler_logp.shape == mask.shape) or logp.dim() != 2:
        raise BatchShapeError(
            f"logp, sampler_logp and mask must share one [B, L] shape, got {list(logp.shape)}, "
            f"{list(sampler_logp.shape)}, {list(mask.shape)}"
        )
    if cap is not None and cap <= 0:
        raise ConfigError(f"cap must be positive or None, got {cap}")
    if band is not None and not 0.0 <= band[0] < band[1]:
        raise ConfigError(f"band must be (low, high) with 0 <= low < high, got {band}")


def _stats(log_ratio: torch.Tensor, on: torch.Tensor, truncated: torch.Tensor, dropped: torch.Tensor,
           token_k3: torch.Tensor, token_mask: torch.Tensor) -> dict[str, float]:
    n = on.sum()
    if int(n) == 0:
        nan = float("nan")
        return {"ratio_mean": nan, "ratio_min": nan, "ratio_max": nan,
                "truncated_frac": 0.0, "masked_frac": 0.0, "mismatch_kl": 0.0}
    ratio = torch.exp(log_ratio[on])
    return {
        "ratio_mean": float(ratio.mean()),
        "ratio_min": float(ratio.min()),
        "ratio_max": float(ratio.max()),
        "truncated_frac": float(truncated[on].float().mean()),
        "masked_frac": float(dropped[on].float().mean()),
        "mismatch_kl": float((token_k3 * token_mask).sum() / token_mask.sum().clamp(min=1.0)),
    }


@torch.no_grad()
def token_is_correction(
    logp: torch.Tensor,
    sampler_logp: torch.Tensor,
    mask: torch.Tensor,
    cap: float | None = 2.0,
    band: tuple[float, float] | None = None,
) -> ISCorrection:
    """Token-level TIS: w_t = min(exp(logp_t - sampler_logp_t), cap); 0 if the ratio is outside ``band``.

    Args:
        logp: [B, L] the learner's logprobs of the sampled tokens (old/proximal policy).
        sampler_logp: [B, L] the sampler's logprobs (``Trajectory.logprobs``).
        mask: [B, L] 1 on model tokens.
        cap: truncation of the weight (None: no truncation).
        band: (low, high): tokens with ratio < low or > high are masked out (None: none).
    """
    _check(logp, sampler_logp, mask, cap, band)
    m = mask.to(logp.dtype)
    on = m > 0
    log_ratio = (logp - sampler_logp) * m
    ratio = torch.exp(log_ratio)
    in_band = torch.ones_like(on)
    if band is not None:
        in_band = (ratio >= band[0]) & (ratio <= band[1])
    weights = ratio if cap is None else ratio.clamp(max=cap)
    truncated = ratio > cap if cap is not None else torch.zeros_like(on)
    keep = (on & in_band).to(logp.dtype)
    k3 = ratio - 1.0 - log_ratio  # k3 of KL(sampler || learner) from sampler samples
    stats = _stats(log_ratio, on, truncated & in_band, ~in_band, k3, m)
    return ISCorrection(weights=weights * keep, keep=keep, stats=stats)


@torch.no_grad()
def sequence_is_correction(
    logp: torch.Tensor,
    sampler_logp: torch.Tensor,
    mask: torch.Tensor,
    cap: float | None = 2.0,
    band: tuple[float, float] | None = None,
) -> ISCorrection:
    """Sequence-level TIS: w_i = min(prod_t pi_learner/pi_sampler, cap) on all tokens of i.

    The product (sum of log ratios) is the exact sequence importance weight; a sequence
    whose ratio is outside ``band`` is masked out whole. Unbiased up to truncation, but
    with variance that grows with length: keep ``cap`` small. Statistics are over
    sequences that have at least one model token.
    """
    _check(logp, sampler_logp, mask, cap, band)
    m = mask.to(logp.dtype)
    has = m.sum(dim=1) > 0  # [B]
    token_log = (logp - sampler_logp) * m
    seq_log = token_log.sum(dim=1)  # [B]
    in_band = torch.ones_like(has)
    if band is not None:
        low = math.log(band[0]) if band[0] > 0 else -math.inf
        in_band = (seq_log >= low) & (seq_log <= math.log(band[1]))
    capped = seq_log if cap is None else seq_log.clamp(max=math.log(cap))
    truncated = seq_log > math.log(cap) if cap is not None else torch.zeros_like(has)
    keep_seq = (has & in_band).to(logp.dtype)  # [B]
    keep = keep_seq[:, None] * m
    weights = torch.exp(capped)[:, None] * keep
    token_ratio = torch.exp(token_log)
    stats = _stats(seq_log, has, truncated & in_band, ~in_band, token_ratio - 1.0 - token_log, m)
    return ISCorrection(weights=weights, keep=keep, stats=stats)
