"""Offline preference losses over trajectory pairs: DPO, IPO and KTO.

Collected rollouts become preference data by pairing, within each group, the best
episode (chosen) with the worst (rejected): :func:`best_worst_pairs`. The losses take
sequence log-likelihoods of the model tokens (:func:`sequence_logprobs`) under the
policy and a frozen reference, and return one loss per pair (or per example for KTO);
average them for the batch loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agentrl.errors import BatchShapeError, ConfigError

__all__ = [
    "sequence_logprobs",
    "best_worst_pairs",
    "dpo_loss",
    "ipo_loss",
    "kto_reference_point",
    "kto_loss",
]


def sequence_logprobs(token_logp: torch.Tensor, mask: torch.Tensor, average: bool = False) -> torch.Tensor:
    """log pi(y|x) = sum_t m_t logp_t (or the mean over model tokens if ``average``); [B, L] -> [B].

    Environment tokens are excluded: the model did not choose them.
    """
    if token_logp.shape != mask.shape or token_logp.dim() != 2:
        raise BatchShapeError(f"token_logp and mask must be [B, L], got {list(token_logp.shape)}, {list(mask.shape)}")
    m = mask.to(token_logp.dtype)
    total = (token_logp * m).sum(dim=1)
    return total / m.sum(dim=1).clamp(min=1.0) if average else total


@torch.no_grad()
def best_worst_pairs(rewards: torch.Tensor, group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group: (index of the highest-reward episode, index of the lowest).

    Groups of size one or with all-equal rewards carry no preference and are skipped;
    ties go to the first index. Returns (chosen [P], rejected [P]) long tensors.
    """
    if rewards.dim() != 1 or group_ids.shape != rewards.shape:
        raise BatchShapeError(f"rewards and group_ids must be [B], got {list(rewards.shape)}, {list(group_ids.shape)}")
    chosen: list[int] = []
    rejected: list[int] = []
    for g in torch.unique(group_ids).tolist():
        idx = torch.nonzero(group_ids == g).flatten()
        r = rewards[idx]
        if idx.numel() < 2 or bool(r.max() == r.min()):
            continue
        chosen.append(int(idx[int(torch.argmax(r))]))
        rejected.append(int(idx[int(torch.argmin(r))]))
    return torch.tensor(chosen, dtype=torch.long), torch.tensor(rejected, dtype=torch.long)


def _margin(pi_chosen: torch.Tensor, pi_rejected: torch.Tensor,
            ref_chosen: torch.Tensor, ref_rejected: torch.Tensor) -> torch.Tensor:
    shapes = {tuple(t.shape) for t in (pi_chosen, pi_rejected, ref_chosen, ref_rejected)}
    if len(shapes) != 1:
        raise BatchShapeError(f"the four log-likelihood tensors must share one [P] shape, got {shapes}")
    return (pi_chosen - ref_chosen) - (pi_rejected - ref_rejected)


def dpo_loss(
    pi_chosen: torch.Tensor,
    pi_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """DPO (Rafailov et al. 2023), per pair [P]:

        h = (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))
        loss = -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)    (eps: cDPO smoothing)
    """
    if beta <= 0:
        raise ConfigError(f"beta must be positive, got {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ConfigError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    h = _margin(pi_chosen, pi_rejected, ref_chosen, ref_rejected)
    return -(1.0 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)


def ipo_loss(
    pi_chosen: torch.Tensor,
    pi_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """IPO (Azar et al. 2023), per pair [P]: loss = (h - 1 / (2 beta))^2, h as in DPO.

    The squared loss regresses the margin to a finite target instead of pushing it to
    infinity. The paper's implementations use length-averaged log-likelihoods
    (``sequence_logprobs(..., average=True)``).
    """
    if beta <= 0:
        raise ConfigError(f"beta must be positive, got {beta}")
    h = _margin(pi_chosen, pi_rejected, ref_chosen, ref_rejected)
    return (h - 1.0 / (2.0 * beta)) ** 2


@torch.no_grad()
def kto_reference_point(policy_logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """z0 = max(0, mean(log pi(y) - log ref(y))): a detached batch estimate of KL(pi || ref).

    The KTO paper estimates it on mismatched (x, y') pairs; passing those log-likelihoods
    here gives that estimator.
    """
    return (policy_logp - ref_logp).mean().clamp(min=0.0)


def kto_loss(
    policy_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    desirable: torch.Tensor,
    reference_point: torch.Tensor | float,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> torch.Tensor:
    """KTO (Ethayarajh et al. 2024), per example [N], with r = log pi(y) - log ref(y):

        desirable:    w_D * (1 - sigmoid(beta (r - z0)))
        undesirable:  w_U * (1 - sigmoid(beta (z0 - r)))

    ``reference_point`` z0 is treated as a constant (see :func:`kto_reference_point`).
    """
    if beta <= 0:
        raise ConfigError(f"beta must be positive, got {beta}")
    if policy_logp.shape != ref_logp.shape or desirable.shape != policy_logp.shape:
        raise BatchShapeError(
            f"policy_logp, ref_logp and desirable must share one [N] shape, got {list(policy_logp.shape)}, "
            f"{list(ref_logp.shape)}, {list(desirable.shape)}"
        )
    z0 = torch.as_tensor(reference_point, dtype=policy_logp.dtype, device=policy_logp.device).detach()
    r = policy_logp - ref_logp
    good = desirable_weight * (1.0 - torch.sigmoid(beta * (r - z0)))
    bad = undesirable_weight * (1.0 - torch.sigmoid(beta * (z0 - r)))
    return torch.where(desirable.bool(), good, bad)
