"""Policy-gradient, value, regularisation, off-policy and preference losses.

Composable pieces for a PPO/GRPO learner; every policy/value loss is per token [B, L]
until an aggregation turns it into a scalar::

    from agentrl import losses as L

    ratio = L.token_ratio(logp, old_logp)              # or L.sequence_ratio (GSPO)
    pg = L.ppo_clip_loss(ratio, adv, clip_low=0.2, clip_high=0.28, dual_clip=3.0)
    isw = L.token_is_correction(old_logp, sampler_logp, mask, cap=2.0)  # vLLM mismatch
    loss = L.token_mean(pg.loss * isw.weights, isw.keep)
    loss = loss + beta * L.token_mean(L.kl_k3(logp, ref_logp), mask)
    loss = loss - ent_coef * L.token_mean(L.entropy_from_logits(logits), mask)

Shapes follow :mod:`agentrl.credit`. See ``docs/credit.md`` for formulas and biases.
"""

from agentrl.losses.aggregate import (
    AGGREGATIONS,
    aggregate,
    constant_normalizer,
    seq_mean_token_mean,
    seq_mean_token_sum,
    token_mean,
)
from agentrl.losses.offpolicy import ISCorrection, sequence_is_correction, token_is_correction
from agentrl.losses.policy import (
    PolicyLoss,
    ValueLoss,
    clipped_value_loss,
    gspo_token_ratio,
    ppo_clip_loss,
    sequence_ratio,
    token_ratio,
)
from agentrl.losses.preference import (
    best_worst_pairs,
    dpo_loss,
    ipo_loss,
    kto_loss,
    kto_reference_point,
    sequence_logprobs,
)
from agentrl.losses.regularizers import (
    KL_ESTIMATORS,
    entropy_from_logits,
    kl_k1,
    kl_k2,
    kl_k3,
    kl_reward_penalty,
)

__all__ = [
    "AGGREGATIONS",
    "aggregate",
    "token_mean",
    "seq_mean_token_mean",
    "seq_mean_token_sum",
    "constant_normalizer",
    "token_ratio",
    "sequence_ratio",
    "gspo_token_ratio",
    "PolicyLoss",
    "ppo_clip_loss",
    "ValueLoss",
    "clipped_value_loss",
    "KL_ESTIMATORS",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "kl_reward_penalty",
    "entropy_from_logits",
    "ISCorrection",
    "token_is_correction",
    "sequence_is_correction",
    "sequence_logprobs",
    "best_worst_pairs",
    "dpo_loss",
    "ipo_loss",
    "kto_reference_point",
    "kto_loss",
]
