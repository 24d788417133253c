"""Credit assignment: pure tensor functions from rewards to per-token advantages.

Tensor conventions (every function here follows them)
-----------------------------------------------------
A batch holds B episodes, left-aligned and right-padded to L tokens and T turns:

=================  ============  =====================================================
name               shape/dtype   meaning
=================  ============  =====================================================
``mask``           [B, L] float  1 on model-generated tokens (the loss mask), else 0
``turn_index``     [B, L] long   turn number of each model token, -1 elsewhere
                                 (``Trajectory.turn_index()``)
``turn_rewards``   [B, T] float  reward of each assistant turn, 0 on padding turns
``turn_mask``      [B, T] float  1 on the episode's real turns
``rewards``        [B] float     return of each episode (sum of its turn rewards)
``outcome``        [B] float     the final turn's reward (``CreditBatch.outcome``);
                                 a function's ``outcome`` argument is the episode
                                 reward it normalises
``group_ids``      [B] long      episodes sampled for the same task share an id
``valid``          [B] bool      False for errored episodes: left out of every
                                 baseline/statistic, advantage exactly 0
``values``         [B, L] float  critic value of each token (optional)
``obs_keys``       [B, T] long   hash of the observation each turn acted on (GiGPO)
=================  ============  =====================================================

Outputs are advantages [B, L] (0 off the mask); critic-based estimators also return
returns [B, L] (the value targets). Environment tokens (tool results, user replies)
and padding have mask 0: they get no advantage, and estimators that walk over time
skip them (no discount step, no value read). Estimators run under ``torch.no_grad``.

:func:`build_credit_batch` builds these tensors from a list of
:class:`~agentrl.trajectory.Trajectory`, so a learner can go straight from
trajectories to advantages::

    batch = build_credit_batch(trajectories)
    adv = grpo_advantages(batch.rewards, batch.group_ids, batch.mask, valid=batch.valid)
    res = compute_advantages("gigpo", batch, gamma=0.9)    # by name, one call shape

See ``docs/credit.md`` for the table of estimators and when to use each.
"""

from agentrl.credit._ops import (
    broadcast_to_tokens,
    broadcast_turns,
    group_normalize,
    group_stats,
    masked_mean,
    masked_whiten,
    turn_bounds,
)
from agentrl.credit.batch import CreditBatch, build_credit_batch, observation_key, observation_keys
from agentrl.credit.gae import token_gae, turn_rewards_to_tokens
from agentrl.credit.outcome import (
    dr_grpo_advantages,
    grpo_advantages,
    grpo_from_batch,
    kl_shaped_token_returns,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
    remax_advantages,
    rloo_advantages,
)
from agentrl.credit.registry import (
    ESTIMATORS,
    AdvantageResult,
    EstimatorSpec,
    compute_advantages,
    register_estimator,
)
from agentrl.credit.turn import (
    bilevel_gae,
    gigpo_advantages,
    mt_grpo_advantages,
    turn_return_advantages,
    turn_returns,
)

__all__ = [
    "AdvantageResult",
    "EstimatorSpec",
    "ESTIMATORS",
    "compute_advantages",
    "register_estimator",
    "CreditBatch",
    "build_credit_batch",
    "observation_key",
    "observation_keys",
    "broadcast_to_tokens",
    "broadcast_turns",
    "group_normalize",
    "group_stats",
    "masked_mean",
    "masked_whiten",
    "turn_bounds",
    "grpo_advantages",
    "grpo_from_batch",
    "dr_grpo_advantages",
    "rloo_advantages",
    "remax_advantages",
    "kl_shaped_token_returns",
    "reinforce_pp_advantages",
    "reinforce_pp_baseline_advantages",
    "token_gae",
    "turn_rewards_to_tokens",
    "turn_returns",
    "turn_return_advantages",
    "bilevel_gae",
    "mt_grpo_advantages",
    "gigpo_advantages",
]
