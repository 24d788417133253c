"""Loss aggregation: per-token losses [B, L] -> one scalar.

The choice decides how much each token and each sequence weighs in the gradient;
every mode has a bias, listed in its docstring (see also ``docs/credit.md``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from agentrl.errors import BatchShapeError, ConfigError

__all__ = [
    "token_mean",
    "seq_mean_token_mean",
    "seq_mean_token_sum",
    "constant_normalizer",
    "AGGREGATIONS",
    "aggregate",
]


def _check(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if x.dim() != 2 or mask.shape != x.shape:
        raise BatchShapeError(
            f"aggregation needs per-token losses and a mask of equal [B, L] shape, got "
            f"{list(x.shape)} and {list(mask.shape)}"
        )
    return mask.to(x.dtype)


def token_mean(x: torch.Tensor, mask: torch.Tensor, num_tokens: float | torch.Tensor | None = None) -> torch.Tensor:
    """sum_{i,t} m x / sum_{i,t} m: every model token of the batch weighs the same.

    No length bias per token, but long sequences hold more tokens and so dominate the
    batch; the per-token weight 1/N depends on the batch's total length, so it differs
    between micro-batches: under gradient accumulation pass ``num_tokens`` = the token
    count of the whole (global) batch to get the exact full-batch token mean (DAPO).
    """
    m = _check(x, mask)
    denom = m.sum().clamp(min=1.0) if num_tokens is None else num_tokens
    return (x * m).sum() / denom


def seq_mean_token_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mean_i [ sum_t m x / sum_t m ]: the original GRPO aggregation (TRL ``grpo``).

    Biased by length: a token of a sequence of length n weighs 1/n, so short sequences'
    tokens count more; for a negative advantage a long answer is penalised less per
    token, which lets wrong answers grow longer (Liu et al. 2025). Sequences with no
    model token contribute 0 and still count in the mean over B.
    """
    m = _check(x, mask)
    return ((x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)).mean()


def seq_mean_token_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mean_i [ sum_t m x ]: the sequence-level REINFORCE objective, unbiased in direction.

    No length normalisation: the loss scale (and gradient variance) grows with the
    sequence length, so the learning rate has to fit the longest answers.
    """
    m = _check(x, mask)
    return (x * m).sum(dim=1).mean()


def constant_normalizer(x: torch.Tensor, mask: torch.Tensor, max_tokens: int) -> torch.Tensor:
    """sum_{i,t} m x / (B * max_tokens): Dr.GRPO's constant normaliser (TRL ``dr_grpo``).

    Same direction as :func:`seq_mean_token_sum` (no length bias) with a scale that does
    not depend on the batch's lengths; ``max_tokens`` is typically the generation budget.
    Loss magnitudes look small when answers are much shorter than the budget.
    """
    m = _check(x, mask)
    if max_tokens <= 0:
        raise ConfigError(f"max_tokens must be positive, got {max_tokens}")
    return (x * m).sum() / (x.shape[0] * max_tokens)


#: Aggregation modes by name, for configs: all take (x, mask); ``constant`` also ``max_tokens``.
AGGREGATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "token-mean": token_mean,
    "seq-mean-token-mean": seq_mean_token_mean,
    "seq-mean-token-sum": seq_mean_token_sum,
    "constant": constant_normalizer,
}


def aggregate(x: torch.Tensor, mask: torch.Tensor, mode: str, max_tokens: int | None = None) -> torch.Tensor:
    """Aggregate with the mode named in :data:`AGGREGATIONS` (for config-driven learners)."""
    if mode not in AGGREGATIONS:
        raise ConfigError(f"unknown aggregation {mode!r}; choose one of {', '.join(AGGREGATIONS)}")
    if mode == "constant":
        if max_tokens is None:
            raise ConfigError("aggregation 'constant' needs max_tokens (e.g. the generation budget)")
        return constant_normalizer(x, mask, max_tokens)
    return AGGREGATIONS[mode](x, mask)
