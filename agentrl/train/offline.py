"""Offline preference training (DPO, IPO, KTO) on recorded trajectories.

    agentrl rollout --env agentrl/GuessNumber-v0 --policy vllm:CKPT --group-size 8 --out r.jsonl
    agentrl train --algo dpo --data r.jsonl model.path=CKPT trainer.steps=50 trainer.lr=1e-4

The run uses the trainer's config tree (``offline`` section; ``--algo``/``--data`` are
shorthands for ``offline.loss``/``offline.data``), run folder, metrics logger, atomic
checkpoints, LoRA (``lora.r``) and resume:

1. trajectories are read (errored episodes dropped) and turned into preferences
   (:func:`preference_pairs`): per group the best episode over the worst, or every episode
   at/above ``offline.threshold`` over every one below; KTO takes each paired episode as
   desirable or not;
2. the frozen reference (``model.path``) scores every used trajectory once (its model
   tokens only: the loss mask), then is freed;
3. each step takes the next ``offline.pairs_per_step`` pairs of a seeded shuffle (cycled)
   and does one optimizer step of the loss in ``agentrl.losses`` (micro-batched by
   ``trainer.micro_batch_size`` sequences); the step number alone decides the data, so a
   resumed run repeats exactly what an uninterrupted one would do;
4. optional held-out evaluation before/after (``eval.episodes`` on ``rollout.env``).
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agentrl.errors import CheckpointError, ConfigError
from agentrl.train.config import TrainConfig, save_config
from agentrl.trajectory import Trajectory

__all__ = ["Preferences", "preference_pairs", "run_offline"]


@dataclass(frozen=True)
class Preferences:
    """Trajectories used, and which is preferred over which."""

    trajectories: list[Trajectory]
    """Every trajectory that appears in a pair."""
    pairs: list[tuple[int, int]]
    """(chosen, rejected) indices into ``trajectories``."""
    desirable: list[bool]
    """Per trajectory: on the chosen side of some pair (KTO's label)."""


def preference_pairs(trajs: Sequence[Trajectory], pairs: str = "best_worst",
                     threshold: float = 0.5) -> Preferences:
    """Preferences within each group (same task, same group id) of valid trajectories."""
    groups: dict[str, list[Trajectory]] = defaultdict(list)
    for t in trajs:
        if t.end_reason != "error" and any(t.loss_mask):
            groups[t.group_id].append(t)
    used: list[Trajectory] = []
    index: dict[int, int] = {}
    out: list[tuple[int, int]] = []

    def idx(t: Trajectory) -> int:
        if id(t) not in index:
            index[id(t)] = len(used)
            used.append(t)
        return index[id(t)]

    for members in groups.values():
        if pairs == "best_worst":
            best = max(members, key=lambda t: t.total_reward)
            worst = min(members, key=lambda t: t.total_reward)
            if best.total_reward > worst.total_reward:
                out.append((idx(best), idx(worst)))
        elif pairs == "threshold":
            good = [t for t in members if t.total_reward >= threshold]
            bad = [t for t in members if t.total_reward < threshold]
            out.extend((idx(g), idx(b)) for g in good for b in bad)
        else:
            raise ConfigError(f"offline.pairs must be best_worst or threshold, got {pairs!r}")
    chosen = {c for c, _ in out}
    return Preferences(used, out, [i in chosen for i in range(len(used))])


def _pad(trajs: Sequence[Trajectory], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, attention, loss mask) right-padded to the longest."""
    width = max(len(t.token_ids) for t in trajs)
    ids = torch.full((len(trajs), width), pad_id, dtype=torch.long)
    attn = torch.zeros(len(trajs), width, dtype=torch.long)
    mask = torch.zeros(len(trajs), width)
    for i, t in enumerate(trajs):
        n = len(t.token_ids)
        ids[i, :n] = torch.tensor(t.token_ids)
        attn[i, :n] = 1
        mask[i, :n] = torch.tensor(t.loss_mask, dtype=torch.float32)
    return ids, attn, mask


def _seq_logp(model: Any, trajs: Sequence[Trajectory], pad_id: int, average: bool, device: Any) -> torch.Tensor:
    from agentrl.losses import sequence_logprobs
    from agentrl.models.logprobs import token_logprobs

    ids, attn, mask = _pad(trajs, pad_id)
    logp = token_logprobs(model, ids.to(device), attn.to(device))
    return sequence_logprobs(logp, mask.to(device), average=average)


@torch.no_grad()
def _reference_logps(config: TrainConfig, trajs: Sequence[Trajectory], pad_id: int, average: bool) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    from agentrl.policy._common import resolve_model_path

    ref = AutoModelForCausalLM.from_pretrained(resolve_model_path(config.model.path),
                                               dtype=getattr(torch, config.model.dtype))
    ref.to(config.trainer.device).eval()
    mb = config.trainer.micro_batch_size
    out = [_seq_logp(ref, trajs[lo:lo + mb], pad_id, average, config.trainer.device).cpu()
           for lo in range(0, len(trajs), mb)]
    del ref
    return torch.cat(out)


def _batch_pairs(n_pairs: int, step: int, per_step: int, seed: int) -> list[int]:
    """Pair indices of ``step`` (1-based): consecutive slices of seeded shuffles of all pairs."""
    out = []
    for pos in range((step - 1) * per_step, step * per_step):
        epoch, k = divmod(pos, n_pairs)
        order = list(range(n_pairs))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        out.append(order[k])
    return out


def _step(config: TrainConfig, model: Any, prefs: Preferences, ref: torch.Tensor, batch: list[int],
          pad_id: int, average: bool) -> dict[str, float]:
    """Forward/backward of one optimizer step's loss (gradients accumulate; no optimizer step)."""
    from agentrl import losses as L

    off, dev = config.offline, config.trainer.device
    pairs = [prefs.pairs[i] for i in batch]
    per_micro = max(1, config.trainer.micro_batch_size // 2)
    sums: dict[str, float] = defaultdict(float)
    z0 = None
    if off.loss == "kto":  # the reference point: a detached batch estimate of KL(pi || ref)
        with torch.no_grad():
            items = [i for p in pairs for i in p]
            pi = torch.cat([_seq_logp(model, [prefs.trajectories[i] for i in items[lo:lo + per_micro * 2]],
                                      pad_id, average, dev).cpu()
                            for lo in range(0, len(items), per_micro * 2)])
            z0 = L.kto_reference_point(pi, ref[items])
        sums["pref/kto_z0"] = float(z0) * len(pairs)
    for lo in range(0, len(pairs), per_micro):
        part = pairs[lo:lo + per_micro]
        c_idx, r_idx = [c for c, _ in part], [r for _, r in part]
        logp = _seq_logp(model, [prefs.trajectories[i] for i in c_idx + r_idx], pad_id, average, dev)
        pi_c, pi_r = logp[:len(part)], logp[len(part):]
        ref_c, ref_r = ref[c_idx].to(dev), ref[r_idx].to(dev)
        if off.loss == "dpo":
            loss = L.dpo_loss(pi_c, pi_r, ref_c, ref_r, beta=off.beta, label_smoothing=off.label_smoothing)
        elif off.loss == "ipo":
            loss = L.ipo_loss(pi_c, pi_r, ref_c, ref_r, beta=off.beta)
        else:
            desirable = torch.tensor([True] * len(part) + [False] * len(part), device=dev)
            per_ex = L.kto_loss(torch.cat([pi_c, pi_r]), torch.cat([ref_c, ref_r]), desirable, z0, beta=off.beta)
            loss = per_ex.view(2, len(part)).sum(dim=0)  # per pair: its two examples
        (loss.sum() / len(pairs)).backward()
        h = ((pi_c - ref_c) - (pi_r - ref_r)).detach()
        sums["loss/preference"] += float(loss.detach().sum())
        sums["pref/margin"] += float(h.sum())
        sums["pref/accuracy"] += float((h > 0).float().sum())
        sums["pref/chosen_reward"] += float(off.beta * (pi_c - ref_c).detach().sum())
        sums["pref/rejected_reward"] += float(off.beta * (pi_r - ref_r).detach().sum())
        sums["pref/chosen_logp"] += float(pi_c.detach().sum())
        sums["pref/rejected_logp"] += float(pi_r.detach().sum())
    return {k: v / len(pairs) for k, v in sums.items()}


def run_offline(config: TrainConfig, *, resume: bool = False, stop_after: int | None = None) -> Any:
    """Train on the preferences of ``config.offline.data``; returns the loop's ``RunResult``.

    Raises:
        ConfigError: no data file, or no group in it with a preference.
    """
    from agentrl.train.checkpoint import load_checkpoint, save_checkpoint
    from agentrl.train.learner import lr_lambda
    from agentrl.train.loop import (
        RunResult,
        _build_models,
        _config_hash,
        _prepare_run_dir,
        _quiet_vllm,
    )
    from agentrl.train.metrics import MetricsLogger, truncate_metrics
    from agentrl.trajectory import load_jsonl

    off, opt = config.offline, config.trainer
    if off.data is None or not Path(off.data).is_file():
        raise ConfigError(f"offline.data={off.data!r}: give a trajectory JSONL file (agentrl rollout --out)")
    prefs = preference_pairs(load_jsonl(off.data), off.pairs, off.threshold)
    if not prefs.pairs:
        raise ConfigError(
            f"{off.data} yields no preference pair ({off.pairs}): every group's rewards are equal, or "
            "groups have one episode (collect with --group-size >= 2), or no reward crosses the threshold"
        )
    average = off.length_average if off.length_average is not None else off.loss == "ipo"
    run_dir, ckpt = _prepare_run_dir(config, resume)
    save_config(config, run_dir / "config.yaml")
    _quiet_vllm(config.logging.verbose)
    from agentrl.policy._common import resolve_model_path

    model, tokenizer, _, _ = _build_models(config, str(ckpt) if ckpt else resolve_model_path(config.model.path))
    model.eval()  # no dropout: the same function as the reference at step 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ref = _reference_logps(config, prefs.trajectories, pad, average)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps,
                                  weight_decay=opt.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(opt.steps, opt.warmup_steps, opt.min_lr_ratio))
    step = 0
    if ckpt is not None:
        state = load_checkpoint(ckpt, optimizer=optimizer, scheduler=scheduler)
        step = int(state["step"])
        if state.get("config_hash") not in (None, _config_hash(config)):
            raise CheckpointError(f"{ckpt} was written with different settings; resume with the run's config.yaml")
    truncate_metrics(run_dir / "metrics.jsonl", step)
    log = MetricsLogger(run_dir, tensorboard=config.logging.tensorboard, progress=config.logging.progress,
                        total_steps=opt.steps, initial_step=step)
    result = RunResult(run_dir=run_dir, steps=step, checkpoint=ckpt)
    log.write(f"offline {off.loss}: {len(prefs.pairs)} pairs from {len(prefs.trajectories)} trajectories "
              f"({off.data}); steps {step + 1}..{opt.steps}")
    evals = _evaluate(config, model, run_dir, "before") if config.eval.episodes else {}
    result.eval_before = evals.get("before")
    try:
        done = 0
        while step < opt.steps and (stop_after is None or done < stop_after):
            step += 1
            t0 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            batch = _batch_pairs(len(prefs.pairs), step, off.pairs_per_step, opt.seed)
            metrics = _step(config, model, prefs, ref, batch, pad, average)
            clip = opt.max_grad_norm if opt.max_grad_norm is not None else float("inf")
            metrics["train/grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, clip))
            optimizer.step()
            scheduler.step()
            metrics["train/lr"] = scheduler.get_last_lr()[0]
            metrics["time/update_s"] = time.perf_counter() - t0
            metrics["data/pairs_seen"] = float(step * off.pairs_per_step)
            if config.checkpoint.every and step % config.checkpoint.every == 0 or step == opt.steps:
                result.checkpoint = save_checkpoint(
                    run_dir, step, model=model, tokenizer=tokenizer, optimizer=optimizer, scheduler=scheduler,
                    state={"cursor": step * off.pairs_per_step, "config_hash": _config_hash(config)},
                    keep=config.checkpoint.keep)
            log.log(step, metrics)
            log.progress(step, metrics)
            result.last_metrics, result.steps = metrics, step
            done += 1
        if config.eval.episodes and step >= opt.steps:
            evals = _evaluate(config, model, run_dir, "after")
        result.eval_after = evals.get("after")
    finally:
        log.close()
    return result


def _evaluate(config: TrainConfig, model: Any, run_dir: Path, when: str) -> dict[str, Any]:
    """Held-out evaluation of the current weights on ``rollout.env`` (cached in eval.json)."""
    from agentrl.policy._common import resolve_model_path
    from agentrl.registry import make
    from agentrl.train.data import SpecSource
    from agentrl.train.loop import _make_policy, _sync_module, evaluate

    path = run_dir / "eval.json"
    evals: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    if when in evals:
        return evals
    env = make(config.rollout.env, **config.rollout.env_kwargs)
    try:
        specs = SpecSource(env, seed=config.trainer.seed, eval_episodes=config.eval.episodes,
                           eval_seed=config.eval.seed).held_out(config.eval.episodes)
    finally:
        env.close()
    policy = _make_policy(config, resolve_model_path(config.model.path))
    try:
        policy.update_weights(_sync_module(config, model), verify=config.rollout.verify_sync,
                              atol=config.rollout.sync_atol)
        evals[when] = evaluate(config, policy, specs)
    finally:
        policy.close()
    path.write_text(json.dumps(evals, indent=1))
    return evals
