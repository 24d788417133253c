"""Advantage estimators by name, with one call shape: ``compute_advantages(name, batch)``.

A trainer config says ``advantage: gigpo`` and the loop calls::

    res = compute_advantages("gigpo", batch, values=critic_values, gamma=0.9)
    res.advantages   # [B, L], 0 off the model tokens and on invalid (errored) episodes
    res.returns      # [B, L] value targets for critic-based estimators, else None

Each estimator reads what it needs from the :class:`~agentrl.credit.CreditBatch`
(rewards, groups, turns, observation keys, the ``valid`` mask); ``values`` [B, L] is
the critic's output (required by ``needs_critic`` estimators, ignored by the others);
``params`` are the estimator's own hyperparameters, listed in its spec. Users add
their own with :func:`register_estimator`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from agentrl.credit.batch import CreditBatch
from agentrl.credit.gae import token_gae, turn_rewards_to_tokens
from agentrl.credit.outcome import (
    dr_grpo_advantages,
    grpo_advantages,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
    remax_advantages,
    rloo_advantages,
)
from agentrl.credit.turn import (
    bilevel_gae,
    gigpo_advantages,
    mt_grpo_advantages,
    turn_return_advantages,
)
from agentrl.errors import BatchShapeError, ConfigError

__all__ = [
    "AdvantageResult",
    "EstimatorSpec",
    "ESTIMATORS",
    "compute_advantages",
    "register_estimator",
    "shaping_rewards",
]


class AdvantageResult(NamedTuple):
    """What every estimator returns."""

    advantages: torch.Tensor
    """[B, L] per-token advantages, 0 off the model tokens and on invalid episodes."""
    returns: torch.Tensor | None
    """[B, L] value targets (critic-based estimators), else None."""


EstimatorFn = Callable[..., "AdvantageResult | torch.Tensor | tuple[torch.Tensor, torch.Tensor]"]


@dataclass(frozen=True)
class EstimatorSpec:
    """A registered estimator: the adapter that runs it and what it needs."""

    name: str
    """Registry name (the value of a config's ``advantage``)."""
    fn: EstimatorFn
    """``fn(batch, values, **params)`` returning advantages [B, L], (advantages, returns)
    or an :class:`AdvantageResult`."""
    doc: str
    """One line: what the estimator does."""
    params: tuple[str, ...] = ()
    """Keyword hyperparameters ``compute_advantages`` accepts for it."""
    required: tuple[str, ...] = ()
    """Those of ``params`` that must be given (e.g. ReMax's ``greedy_rewards``)."""
    needs_critic: bool = False
    """Needs ``values`` [B, L] from a critic (and returns value targets)."""
    needs_obs_keys: bool = False
    """Groups turns by ``batch.obs_keys``: useful only when episodes revisit states."""
    needs_groups: bool = False
    """Compares episodes of one task: with groups of one every advantage is 0."""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"an estimator name must be a non-empty str, got {self.name!r}")
        if not callable(self.fn):
            raise ConfigError(f"estimator {self.name!r}: fn must be callable, got {type(self.fn).__name__}")
        missing = [p for p in self.required if p not in self.params]
        if missing:
            raise ConfigError(f"estimator {self.name!r}: required {missing} must also be listed in params")


ESTIMATORS: dict[str, EstimatorSpec] = {}
"""Name -> spec of every registered estimator (built-ins first)."""


def register_estimator(
    name: str,
    fn: EstimatorFn,
    *,
    doc: str,
    params: tuple[str, ...] = (),
    required: tuple[str, ...] = (),
    needs_critic: bool = False,
    needs_obs_keys: bool = False,
    needs_groups: bool = False,
    replace: bool = False,
) -> EstimatorSpec:
    """Add an estimator under ``name``; ``fn(batch, values, **params)`` as in :class:`EstimatorSpec`.

    Raises :class:`ConfigError` if the name is taken (pass ``replace=True`` to override).
    """
    if name in ESTIMATORS and not replace:
        raise ConfigError(f"an estimator named {name!r} is already registered; pass replace=True to override it")
    spec = EstimatorSpec(name=name, fn=fn, doc=doc, params=tuple(params), required=tuple(required),
                         needs_critic=needs_critic, needs_obs_keys=needs_obs_keys, needs_groups=needs_groups)
    ESTIMATORS[name] = spec
    return spec


def compute_advantages(
    name: str, batch: CreditBatch, *, values: torch.Tensor | None = None, **params: Any
) -> AdvantageResult:
    """Run the estimator ``name`` on ``batch``.

    Args:
        name: a key of :data:`ESTIMATORS`.
        batch: from :func:`~agentrl.credit.build_credit_batch`.
        values: [B, L] critic values; required when the spec says ``needs_critic``,
            ignored otherwise.
        params: the estimator's hyperparameters (see its spec's ``params``).

    Raises:
        ConfigError: unknown name or parameter, a missing required parameter, or a
            critic estimator without ``values``.
    """
    spec = ESTIMATORS.get(name)
    if spec is None:
        raise ConfigError(f"unknown advantage estimator {name!r}; known: {', '.join(sorted(ESTIMATORS))}")
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        raise ConfigError(
            f"estimator {name!r} takes no parameter {', '.join(map(repr, unknown))}; it accepts "
            f"{', '.join(spec.params) if spec.params else 'none'}"
        )
    missing = [p for p in spec.required if p not in params]
    if missing:
        raise ConfigError(f"estimator {name!r} needs the parameter(s) {', '.join(missing)}")
    if spec.needs_critic:
        if values is None:
            raise ConfigError(f"estimator {name!r} needs critic values [B, L]; pass values=... (or use grpo)")
        if tuple(values.shape) != tuple(batch.mask.shape):
            raise BatchShapeError(f"values must have shape {list(batch.mask.shape)}, got {list(values.shape)}")
    out = spec.fn(batch, values if spec.needs_critic else None, **params)
    if isinstance(out, AdvantageResult):
        return out
    if isinstance(out, tuple):
        return AdvantageResult(out[0], out[1])
    return AdvantageResult(out, None)


def shaping_rewards(batch: CreditBatch) -> torch.Tensor:
    """[B, T] the per-turn (shaping) rewards: ``turn_rewards`` with each episode's final
    turn zeroed, since that turn's reward is the outcome (``batch.outcome``)."""
    tm = batch.turn_mask > 0
    last = tm.sum(dim=1) - 1  # [B], -1 without turns
    pos = torch.arange(tm.shape[1], device=tm.device)[None, :]
    return torch.where(tm & (pos != last[:, None]), batch.turn_rewards, torch.zeros_like(batch.turn_rewards))


# -- built-in adapters: what each estimator reads from the batch ---------------------------
def _grpo(b: CreditBatch, values: None, **p: Any) -> torch.Tensor:
    return grpo_advantages(b.rewards, b.group_ids, b.mask, valid=b.valid, **p)


def _dr_grpo(b: CreditBatch, values: None, **p: Any) -> torch.Tensor:
    return dr_grpo_advantages(b.rewards, b.group_ids, b.mask, valid=b.valid, **p)


def _rloo(b: CreditBatch, values: None, **p: Any) -> torch.Tensor:
    return rloo_advantages(b.rewards, b.group_ids, b.mask, valid=b.valid, **p)


def _reinforce_pp(b: CreditBatch, values: None, **p: Any) -> torch.Tensor:
    return reinforce_pp_advantages(b.rewards, b.mask, valid=b.valid, **p)


def _reinforce_pp_baseline(b: CreditBatch, values: None, **p: Any) -> torch.Tensor:
    return reinforce_pp_baseline_advantages(b.rewards, b.group_ids, b.mask, valid=b.valid, **p)


def _remax(b: CreditBatch, values: None, *, greedy_rewards: torch.Tensor) -> torch.Tensor:
    return remax_advantages(b.rewards, greedy_rewards, b.mask, valid=b.valid)


def _gae(b: CreditBatch, values: torch.Tensor, **p: Any) -> tuple[torch.Tensor, torch.Tensor]:
    token_r = turn_rewards_to_tokens(b.turn_rewards, b.turn_mask, b.turn_index)
    return token_gae(token_r, values, b.mask, valid=b.valid, **p)


def _turn_return(b: CreditBatch, values: None, **p: Any) -> torch.Tensor:
    return turn_return_advantages(b.turn_rewards, b.turn_mask, b.turn_index, valid=b.valid, **p)


def _bilevel_gae(b: CreditBatch, values: torch.Tensor, **p: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return bilevel_gae(b.turn_rewards, b.turn_mask, b.turn_index, values, valid=b.valid, **p)


def _mt_grpo(b: CreditBatch, values: None, **p: Any) -> torch.Tensor:
    return mt_grpo_advantages(shaping_rewards(b), b.turn_mask, b.outcome, b.group_ids, b.turn_index,
                              valid=b.valid, **p)


def _gigpo(b: CreditBatch, values: None, **p: Any) -> torch.Tensor:
    return gigpo_advantages(b.rewards, b.group_ids, b.turn_rewards, b.turn_mask, b.obs_keys, b.turn_index,
                            valid=b.valid, **p)


_BUILTINS: Mapping[str, dict[str, Any]] = {
    "grpo": dict(fn=_grpo, params=("eps", "unbiased"), needs_groups=True,
                 doc="GRPO: (r - group mean) / (group std + eps) on every token of the episode"),
    "dr_grpo": dict(fn=_dr_grpo, needs_groups=True,
                    doc="Dr.GRPO: r - group mean, no std division"),
    "rloo": dict(fn=_rloo, needs_groups=True,
                 doc="RLOO: r - mean of the other group members (leave-one-out baseline)"),
    "reinforce_pp": dict(fn=_reinforce_pp, params=("kl", "kl_coef", "gamma", "eps"),
                         doc="REINFORCE++: KL-shaped token returns, whitened over the batch"),
    "reinforce_pp_baseline": dict(fn=_reinforce_pp_baseline, params=("kl", "kl_coef", "gamma", "eps"),
                                  needs_groups=True,
                                  doc="REINFORCE++-baseline: group-centred rewards, then REINFORCE++"),
    "remax": dict(fn=_remax, params=("greedy_rewards",), required=("greedy_rewards",),
                  doc="ReMax: r - reward of the greedy rollout of the same task (greedy_rewards [B])"),
    "gae": dict(fn=_gae, params=("gamma", "lam", "bootstrap_value"), needs_critic=True,
                doc="token GAE with a critic; turn rewards on each turn's last token, env tokens skipped"),
    "turn_return": dict(fn=_turn_return, params=("gamma",),
                        doc="discounted return-to-go of each turn on its tokens (no baseline)"),
    "bilevel_gae": dict(fn=_bilevel_gae, params=("gamma_turn", "lam_turn", "gamma_token", "lam_token",
                                                 "bootstrap_value"), needs_critic=True,
                        doc="bi-level GAE: GAE over turns, then within each turn"),
    "mt_grpo": dict(fn=_mt_grpo, params=("outcome_coef", "scale_by_std", "eps"), needs_groups=True,
                    doc="MT-GRPO: group-normalised shaping reward per turn position + outcome advantage"),
    "gigpo": dict(fn=_gigpo, params=("step_coef", "gamma", "scale_by_std", "eps"), needs_groups=True,
                  needs_obs_keys=True,
                  doc="GiGPO: episode-level GRPO + step groups of turns with equal observation keys"),
}

for _name, _kw in _BUILTINS.items():
    register_estimator(_name, **_kw)
