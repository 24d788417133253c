"""The learner: clipped policy-gradient updates (GRPO family, PPO with a critic) on a CreditBatch.

One rollout batch is used for ``trainer.epochs`` passes of ``trainer.minibatches``
optimizer steps; each minibatch is cut into micro-batches of ``trainer.micro_batch_size``
episodes whose gradients accumulate, normalised so that the sum equals the loss of the
whole minibatch under the chosen aggregation. Per micro-batch::

    logp, entropy = token_logprobs(model, ids)                  (recomputed by the learner)
    ratio = exp(logp - old_logp)            token (PPO)  |  GSPO-token sequence ratio
    pg    = ppo_clip_loss(ratio, A, clip_low, clip_high, dual_clip)
    w     = truncated IS weight  min(pi_old / pi_sampler, cap), masked outside the band
    loss  = agg(pg * w) + kl_coef * agg(KL(logp, ref)) - entropy_coef * agg(H)
            + value_coef * agg(clipped_value_loss)            (with a critic)

``old_logp`` is the learner's logprob before the update (the proximal policy). With one
epoch of one minibatch it equals ``logp`` and costs no extra forward pass; otherwise
:meth:`Learner.score` computes it (and the critic's values and the reference logprobs)
once per batch. The sampler's logprobs (vLLM's) enter only through the IS weight and the
mismatch report. Invalid episodes (errored) have no token in the loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from agentrl import losses as L
from agentrl.credit.batch import CreditBatch
from agentrl.models.logprobs import token_logprobs
from agentrl.train.config import TrainConfig
from agentrl.train.critic import Critic, capture_hidden

__all__ = ["Learner", "Scored", "lr_lambda"]


def lr_lambda(total: int, warmup: int, min_ratio: float) -> Any:
    """Multiplier of the peak lr at optimizer step ``s``: linear warm-up, then cosine to ``min_ratio``."""

    def f(s: int) -> float:
        if warmup and s < warmup:
            return (s + 1) / warmup
        span = max(total - warmup, 1)
        progress = min(max(s - warmup, 0) / span, 1.0)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


@dataclass
class Scored:
    """What the learner computes once per batch before updating (all [B, L], detached)."""

    old_logp: torch.Tensor | None
    """Learner logprobs before the update (None: taken from the first forward of the update)."""
    values: torch.Tensor | None
    """Critic values at rollout time (None without a critic)."""
    ref_logp: torch.Tensor | None
    """Reference-model logprobs (None when kl_coef is 0)."""


def _slice(batch: CreditBatch, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Token ids and attention of the episodes ``idx``, trimmed to their longest."""
    attn = batch.attention_mask[idx]
    length = max(int(attn.sum(dim=1).max()), 1)
    return batch.token_ids[idx, :length], attn[:, :length], length


class Learner:
    """Owns the trained model, the optional critic and reference model, the optimizer."""

    def __init__(self, config: TrainConfig, model: Any, *, critic: Critic | None = None,
                 ref_model: Any = None) -> None:
        self.config = config
        self.model = model
        self.critic = critic
        self.ref_model = ref_model
        opt = config.trainer
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": opt.lr}]
        if critic is not None:
            groups.append({"params": list(critic.parameters()), "lr": opt.critic_lr or opt.lr})
        self.optimizer = torch.optim.AdamW(groups, betas=(opt.beta1, opt.beta2), eps=opt.eps,
                                           weight_decay=opt.weight_decay)
        total = opt.steps * opt.epochs * opt.minibatches
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(total, opt.warmup_steps, opt.min_lr_ratio)
        )
        self.device = torch.device(opt.device)
        self.model.eval()  # no dropout: the learner must reproduce the sampler's distribution

    @property
    def updates_per_batch(self) -> int:
        return self.config.trainer.epochs * self.config.trainer.minibatches

    # ------------------------------------------------------------------ scoring
    def _forward(self, ids: torch.Tensor, attn: torch.Tensor, *, need_values: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(logp, entropy, values) of the trained model (values from the critic, if any)."""
        values = None
        if need_values and self.critic is not None and self.critic.mode == "head":
            with capture_hidden(self.model) as box:
                logp, ent = token_logprobs(self.model, ids, attn, return_entropy=True)
            values = self.critic.values_from_hidden(box["hidden"])
        else:
            logp, ent = token_logprobs(self.model, ids, attn, return_entropy=True)
            if need_values and self.critic is not None:
                values = self.critic(ids, attn)
        return logp, ent, values

    @torch.no_grad()
    def score(self, batch: CreditBatch) -> Scored:
        """Old logprobs (if several updates per batch), critic values, reference logprobs."""
        need_old = self.updates_per_batch > 1
        need_values = self.critic is not None
        need_ref = self.ref_model is not None
        b, seq = batch.token_ids.shape
        old = torch.zeros(b, seq) if need_old else None
        values = torch.zeros(b, seq) if need_values else None
        ref = torch.zeros(b, seq) if need_ref else None
        if not (need_old or need_values or need_ref):
            return Scored(None, None, None)
        mb = self.config.trainer.micro_batch_size
        for lo in range(0, b, mb):
            idx = torch.arange(lo, min(lo + mb, b))
            ids, attn, n = _slice(batch, idx)
            ids, attn = ids.to(self.device), attn.to(self.device)
            if need_old or need_values:
                logp, _, v = self._forward(ids, attn, need_values=need_values)
                if old is not None:
                    old[idx, :n] = logp.cpu()
                if values is not None and v is not None:
                    values[idx, :n] = v.cpu()
            if ref is not None:
                ref[idx, :n] = token_logprobs(self.ref_model, ids, attn).cpu()
        return Scored(old, values, ref)

    # ------------------------------------------------------------------ update
    def _aggregate(self, x: torch.Tensor, mask: torch.Tensor, n_tokens: float, n_seqs: int) -> torch.Tensor:
        """This micro-batch's share of the minibatch loss under the configured aggregation."""
        mode = self.config.algo.aggregation
        share = x.shape[0] / n_seqs
        if mode == "token-mean":
            return L.token_mean(x, mask, num_tokens=max(n_tokens, 1.0))
        if mode == "constant":
            budget = self.config.rollout.max_new_tokens * self.config.rollout.max_turns
            return L.constant_normalizer(x, mask, budget) * share
        return L.aggregate(x, mask, mode) * share

    def update(self, batch: CreditBatch, advantages: torch.Tensor, returns: torch.Tensor | None,
               scored: Scored, generator: torch.Generator | None = None) -> dict[str, float]:
        """Run the epochs x minibatches of optimizer steps on one rollout batch; return metrics.

        ``generator`` shuffles the minibatches (pass a seeded one for exact resumes).
        """
        opt = self.config.trainer
        b = batch.batch_size
        loss_mask = batch.mask * batch.valid.to(batch.mask.dtype)[:, None]
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        learner_first = torch.zeros_like(batch.logprobs)  # learner logprobs at the first pass

        def add(key: str, value: float, weight: float = 1.0) -> None:
            sums[key] = sums.get(key, 0.0) + value * weight
            counts[key] = counts.get(key, 0.0) + weight

        mb_size = b // opt.minibatches
        grad_norms = []
        for epoch in range(opt.epochs):
            order = torch.randperm(b, generator=generator) if opt.minibatches > 1 else torch.arange(b)
            for m in range(opt.minibatches):
                mb_idx = order[m * mb_size:(m + 1) * mb_size]
                n_tokens = float(loss_mask[mb_idx].sum())
                self.optimizer.zero_grad(set_to_none=True)
                total = 0.0
                for lo in range(0, len(mb_idx), opt.micro_batch_size):
                    idx = mb_idx[lo:lo + opt.micro_batch_size]
                    parts = self._micro_step(batch, idx, advantages, returns, scored, loss_mask,
                                             n_tokens, len(mb_idx), learner_first, epoch == 0)
                    w = float(loss_mask[idx].sum())
                    total += parts.pop("loss/total")
                    for k, v in parts.items():
                        add(k, v, w)
                params = [p for g in self.optimizer.param_groups for p in g["params"]]
                clip = opt.max_grad_norm if opt.max_grad_norm is not None else float("inf")
                grad_norms.append(float(torch.nn.utils.clip_grad_norm_(params, clip)))
                add("loss/total", total)
                self.optimizer.step()
                self.scheduler.step()
        metrics = {k: sums[k] / counts[k] if counts[k] else float("nan") for k in sums}
        metrics["train/grad_norm"] = sum(grad_norms) / len(grad_norms)
        metrics["train/grad_norm_max"] = max(grad_norms)
        metrics["train/lr"] = self.scheduler.get_last_lr()[0]
        metrics["train/optimizer_steps"] = float(len(grad_norms))
        self.last_learner_logp = learner_first
        return metrics

    def _micro_step(self, batch: CreditBatch, idx: torch.Tensor, advantages: torch.Tensor,
                    returns: torch.Tensor | None, scored: Scored, loss_mask: torch.Tensor,
                    n_tokens: float, n_seqs: int, learner_first: torch.Tensor, first_epoch: bool
                    ) -> dict[str, float]:
        algo = self.config.algo
        ids, attn, n = _slice(batch, idx)
        ids, attn = ids.to(self.device), attn.to(self.device)
        mask = loss_mask[idx, :n].to(self.device)
        adv = advantages[idx, :n].to(self.device)
        sampler = batch.logprobs[idx, :n].to(self.device)
        logp, ent, values = self._forward(ids, attn, need_values=self.critic is not None)
        old = logp.detach() if scored.old_logp is None else scored.old_logp[idx, :n].to(self.device)
        if first_epoch:
            learner_first[idx, :n] = (logp.detach() if scored.old_logp is None else old).cpu()
        # sampler/learner mismatch correction (weights are detached)
        if algo.is_correction == "none":
            weights, keep, is_stats = mask, mask, {}
        else:
            fn = L.token_is_correction if algo.is_correction == "token" else L.sequence_is_correction
            band = tuple(algo.is_band) if algo.is_band is not None else None
            isw = fn(old, sampler, mask, cap=algo.is_cap, band=band)
            weights, keep, is_stats = isw.weights, isw.keep, isw.stats
        ratio = (L.token_ratio(logp, old) if algo.ratio == "token"
                 else L.gspo_token_ratio(logp, old, mask))
        pg = L.ppo_clip_loss(ratio, adv, clip_low=algo.clip_low, clip_high=algo.clip_high,
                             dual_clip=algo.dual_clip)
        pg_loss = self._aggregate(pg.loss * weights, keep, n_tokens, n_seqs)
        ent_mean = self._aggregate(ent, mask, n_tokens, n_seqs)
        loss = pg_loss - algo.entropy_coef * ent_mean
        parts: dict[str, float] = {}
        if scored.ref_logp is not None and not algo.kl_in_reward:
            kl = L.KL_ESTIMATORS[algo.kl_estimator](logp, scored.ref_logp[idx, :n].to(self.device))
            kl_loss = self._aggregate(kl, mask, n_tokens, n_seqs)
            loss = loss + algo.kl_coef * kl_loss
            parts["loss/kl"] = _mean(kl.detach(), mask)
        if self.critic is not None and values is not None and returns is not None:
            old_v = scored.values[idx, :n].to(self.device)
            vl = L.clipped_value_loss(values, old_v, returns[idx, :n].to(self.device), clip=algo.value_clip)
            v_loss = self._aggregate(vl.loss, mask, n_tokens, n_seqs)
            loss = loss + algo.value_coef * v_loss
            parts["loss/value"] = _mean(vl.loss.detach(), mask)
            parts["value/clip_frac"] = _mean(vl.clipped.float(), mask)
            parts["value/mean"] = _mean(values.detach(), mask)
        loss.backward()
        on = mask
        parts.update({
            "loss/policy": _mean(pg.loss.detach(), on),
            "policy/entropy": _mean(ent.detach(), on),
            "policy/clip_frac": _mean((pg.clipped_low | pg.clipped_high).float(), on),
            "policy/clip_frac_low": _mean(pg.clipped_low.float(), on),
            "policy/clip_frac_high": _mean(pg.clipped_high.float(), on),
            "policy/ratio_mean": _mean(ratio.detach().expand_as(on), on),
            "policy/approx_kl_old": _mean(torch.expm1(logp.detach() - old) - (logp.detach() - old), on),
        })
        for k, v in is_stats.items():
            if isinstance(v, float) and math.isfinite(v):
                parts[f"is/{k}"] = v
        parts["loss/total"] = float(loss.detach())
        return parts


def _mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    m = mask.to(x.dtype)
    return float((x * m).sum() / m.sum().clamp(min=1.0))
