"""KL to a reference policy (k1, k2, k3 estimators) and entropy, per token.

With samples y_t drawn from the current policy pi and d_t = logp_t - ref_logp_t
(Schulman, "Approximating KL divergence", 2020)::

    k1 = d                          unbiased for KL(pi||ref), high variance, can be < 0
    k2 = d^2 / 2                    biased, low variance; its gradient is that of KL
    k3 = exp(-d) - 1 + d            unbiased for KL(pi||ref), always >= 0, low variance

Use as a loss term (``loss += beta * token_mean(kl_k3(logp, ref), mask)``, GRPO style) or
folded into the reward (:func:`kl_reward_penalty`, PPO/REINFORCE++ style, where k1 is usual).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from agentrl.errors import BatchShapeError, ConfigError

__all__ = [
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "KL_ESTIMATORS",
    "kl_reward_penalty",
    "entropy_from_logits",
]


def _check(logp: torch.Tensor, ref_logp: torch.Tensor) -> None:
    if logp.shape != ref_logp.shape:
        raise BatchShapeError(f"logp and ref_logp shapes differ: {list(logp.shape)} vs {list(ref_logp.shape)}")


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k1 = logp - ref_logp (per token)."""
    _check(logp, ref_logp)
    return logp - ref_logp


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k2 = 0.5 * (logp - ref_logp)^2 (per token)."""
    _check(logp, ref_logp)
    return 0.5 * (logp - ref_logp) ** 2


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 = exp(ref_logp - logp) - (ref_logp - logp) - 1 (per token, >= 0)."""
    _check(logp, ref_logp)
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


#: Estimators by name, for configs.
KL_ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "k1": kl_k1,
    "k2": kl_k2,
    "k3": kl_k3,
}


def kl_reward_penalty(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    coef: float,
    estimator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = kl_k1,
) -> torch.Tensor:
    """-coef * KL_t on model tokens, detached: add it to the token rewards before computing returns.

    ``logp`` are the sampling-time logprobs of the policy. [B, L] -> [B, L].
    """
    if coef < 0:
        raise ConfigError(f"KL coefficient must be >= 0, got {coef}")
    return (-coef * estimator(logp, ref_logp) * mask.to(logp.dtype)).detach()


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """H_t = logsumexp(z) - sum_v softmax(z)_v z_v; [B, L, V] -> [B, L].

    Entropy bonus: ``loss = pg_loss - coef * token_mean(entropy_from_logits(logits), mask)``.
    """
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)
