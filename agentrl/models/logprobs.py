"""Learner-side token logprobs: the one place that turns model logits into per-token logprobs.

Alignment (the same as :attr:`agentrl.credit.CreditBatch.logprobs`)::

    logp[b, t] = log p(ids[b, t] | ids[b, :t])     for t >= 1 where tokens t-1 and t are real
    logp[b, 0] = 0, and 0 wherever attention_mask (at t or t-1) is 0

Memory: the log-softmax is never materialized. Each chunk of positions is cast to float32,
reduced with ``logsumexp`` and the taken token's logit is gathered, so beyond the model's
own logits tensor at most one float32 ``[B, L, V]`` copy exists (kept by autograd when the
logits are not float32 already; none at all when they are and ``temperature == 1``).
"""

from __future__ import annotations

from typing import Any

from agentrl.errors import BatchShapeError, ConfigError

__all__ = ["token_logprobs", "gather_logprobs"]

#: Positions per chunk: bounds the float32 temporaries at ``B * CHUNK * V`` elements.
CHUNK = 256


def gather_logprobs(
    logits: Any, ids: Any, *, temperature: float = 1.0, return_entropy: bool = False
) -> Any:
    """``log_softmax(logits / temperature)[..., ids]`` without a full log-softmax copy.

    Args:
        logits: ``[..., N, V]`` (any float dtype; computed in float32).
        ids: ``[..., N]`` token ids, one per logits row.
        temperature: divides the logits first (> 0).
        return_entropy: also return the entropy of each row's distribution.

    Returns:
        ``logp [..., N]`` float32, or ``(logp, entropy)``.
    """
    import torch

    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    if ids.dim() < 1 or tuple(logits.shape[:-1]) != tuple(ids.shape):
        raise BatchShapeError(
            f"logits {tuple(logits.shape)} and ids {tuple(ids.shape)} do not fit: "
            "expected logits [..., N, V] and ids [..., N]"
        )
    logps, ents = [], []
    for lo in range(0, ids.shape[-1], CHUNK):
        chunk = logits[..., lo : lo + CHUNK, :].float()
        if temperature != 1.0:
            chunk = chunk / temperature
        lse = torch.logsumexp(chunk, dim=-1)
        taken = ids[..., lo : lo + CHUNK].long().unsqueeze(-1)
        logps.append(chunk.gather(-1, taken).squeeze(-1) - lse)
        if return_entropy:
            probs = torch.exp(chunk - lse.unsqueeze(-1))
            ents.append(lse - (probs * chunk).sum(-1))
    if not logps:  # N == 0
        empty = logits.new_zeros(ids.shape, dtype=torch.float32)
        return (empty, empty.clone()) if return_entropy else empty
    logp = torch.cat(logps, dim=-1)
    return (logp, torch.cat(ents, dim=-1)) if return_entropy else logp


def token_logprobs(
    model: Any,
    input_ids: Any,
    attention_mask: Any = None,
    *,
    temperature: float = 1.0,
    return_entropy: bool = False,
) -> Any:
    """Per-token logprobs of ``input_ids`` under ``model`` (one forward pass).

    Args:
        model: a transformers causal LM (or anything called as ``model(input_ids=...,
            attention_mask=..., position_ids=...)`` returning ``.logits [B, L, V]``).
        input_ids: ``[B, L]`` token ids (left or right padded).
        attention_mask: ``[B, L]`` 1 on real tokens, 0 on padding (``None``: all real).
            Position ids are counted over real tokens, so left padding does not shift them.
        temperature: the sampling temperature the tokens were drawn with (logits are
            divided by it; 1.0 = the model's raw distribution).
        return_entropy: also return the entropy of the predictive distribution at each
            position (aligned the same way: ``entropy[:, t]`` is that of the distribution
            ``ids[t]`` was drawn from; 0 where ``logp`` is 0 by the mask).

    Returns:
        ``logp [B, L]`` float32 (gradients flow to the model unless called under
        ``torch.no_grad()``), or ``(logp, entropy)``.

    Raises:
        BatchShapeError: ``input_ids`` is not 2-D or the mask does not match it.
        ConfigError: ``temperature <= 0``.
    """
    import torch

    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    if input_ids.dim() != 2:
        raise BatchShapeError(f"input_ids must be [B, L], got shape {tuple(input_ids.shape)}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if tuple(attention_mask.shape) != tuple(input_ids.shape):
        raise BatchShapeError(
            f"attention_mask {tuple(attention_mask.shape)} does not match input_ids "
            f"{tuple(input_ids.shape)}"
        )
    mask = attention_mask.long()
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(
        input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=False
    ).logits
    batch, length = input_ids.shape
    out = torch.zeros(batch, length, dtype=torch.float32, device=logits.device)
    ent = torch.zeros_like(out) if return_entropy else None
    if length > 1:
        got = gather_logprobs(
            logits[:, :-1], input_ids[:, 1:], temperature=temperature, return_entropy=return_entropy
        )
        # where(), not a product: padded positions may hold NaN logits (fully masked rows).
        valid = (mask[:, 1:] * mask[:, :-1]).bool()
        if return_entropy:
            got, entropy = got
            ent = torch.cat([ent[:, :1], torch.where(valid, entropy, 0.0)], dim=1)
        out = torch.cat([out[:, :1], torch.where(valid, got, 0.0)], dim=1)
    return (out, ent) if return_entropy else out
