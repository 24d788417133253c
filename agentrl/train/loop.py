"""The training loop, top to bottom: collect -> credit -> update -> sync -> log -> checkpoint.

    train(config)                         RUN_DIR = config.logging.run_dir
      refuse impossible configs / envs    (before any model is loaded)
      learner model + optimizer           (from the last checkpoint when resuming)
      policy (vllm: or hf:)               the sampler; must take weight updates
      held-out evaluation (before)
      for step in start+1 .. steps:
        specs   = the next tasks_per_step episode specs (data cursor)
        trajs   = collect(specs x group_size)             streaming collector
        batch   = build_credit_batch(trajs)               invalid (errored) episodes masked
        scored  = learner.score(batch)                    old logprobs, values, reference
        adv     = compute_advantages(algo.advantage, batch, values=...)
        metrics = learner.update(batch, adv, returns, scored)
        policy.update_weights(model, verify=True)        logprob check on a probe text
        log metrics (JSONL, TensorBoard, bar); checkpoint every N steps
      held-out evaluation (after)

Sampling in step ``s`` is seeded from (trainer.seed, s) and the tasks are spec numbers
``cursor .. cursor + tasks_per_step - 1``, so a resumed run replays exactly what an
uninterrupted one would have done.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from agentrl.errors import CheckpointError, ConfigError
from agentrl.train.config import TrainConfig, save_config

__all__ = ["RunResult", "train", "rollout_config", "evaluate"]


@dataclass
class RunResult:
    """What a finished run reports."""

    run_dir: Path
    """The run folder."""
    steps: int
    """Steps completed (including those before a resume)."""
    checkpoint: Path | None
    """The last checkpoint written."""
    eval_before: dict[str, float] | None = None
    """Held-out figures before training (None: no evaluation)."""
    eval_after: dict[str, float] | None = None
    """Held-out figures after training."""
    last_metrics: dict[str, Any] = field(default_factory=dict)
    """The last step's metrics."""


def rollout_config(config: TrainConfig, step: int, *, evaluation: bool = False) -> Any:
    """The collector settings of ``step`` (its sampling seed depends on the run seed and step)."""
    from agentrl.rollout import RolloutConfig

    r = config.rollout
    return RolloutConfig(
        max_turns=r.max_turns, max_new_tokens=r.max_new_tokens, max_context=r.max_context,
        temperature=config.eval.temperature if evaluation else r.temperature,
        top_p=1.0 if evaluation else r.top_p,
        seed=(config.trainer.seed * 1_000_003 + step * 10_007) % 2**30,
        group_size=1 if evaluation else r.group_size,
        concurrency=r.concurrency, env_kwargs=dict(r.env_kwargs),
        truncate_on_length=r.truncate_on_length,
    )


async def _collect(env_id: str, policy: Any, specs: Sequence[Any], rcfg: Any,
                   on_episode: Any = None) -> list[Any]:
    """``rcfg.group_size`` episodes of each spec (streaming collector), in spec order."""
    from agentrl.rollout import collect

    if hasattr(policy, "collect"):  # a Ray worker pool collects on its workers
        return await policy.collect(list(specs), rcfg, progress=on_episode)
    return await collect(env_id, policy, list(specs), rcfg, progress=on_episode)


def evaluate(config: TrainConfig, policy: Any, specs: Sequence[Any]) -> dict[str, float]:
    """Held-out success and reward (one episode per spec, eval temperature)."""
    trajs = asyncio.run(_collect(config.rollout.env, policy, specs,
                                 rollout_config(config, 0, evaluation=True)))
    valid = [t for t in trajs if t.end_reason != "error"]
    solved = [t for t in valid if t.success]
    return {
        "success": sum(bool(t.success) for t in valid) / max(len(valid), 1),
        "reward": statistics.fmean(t.total_reward for t in valid) if valid else float("nan"),
        "turns": statistics.fmean(t.num_turns for t in valid) if valid else float("nan"),
        "turns_to_solve": statistics.fmean(t.num_turns for t in solved) if solved else float("nan"),
        "episodes": float(len(trajs)),
        "invalid": float(len(trajs) - len(valid)),
    }


def _quiet_vllm(verbose: bool) -> None:
    """Hide vLLM's own log lines unless verbose (its workers read the variable at start)."""
    if verbose:
        return
    import transformers

    transformers.utils.logging.disable_progress_bar()
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "1")
    # the engine's worker processes inherit these: torch's C++ warnings (NUMA binding) and
    # deprecation chatter of vLLM's dependencies
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("vllm").setLevel(logging.ERROR)


def _check_env(config: TrainConfig, env: Any) -> None:
    """Refuse estimator/env combinations that cannot work (before any model is loaded)."""
    from agentrl.credit.registry import ESTIMATORS

    spec = ESTIMATORS[config.algo.advantage]
    env_turns = getattr(getattr(env, "unwrapped", env), "max_turns", None)
    if spec.needs_obs_keys and env_turns is not None and int(env_turns) < 2:
        raise ConfigError(
            f"algo.advantage={config.algo.advantage} needs observation keys of repeated states, "
            f"but {config.rollout.env} ends after one turn (max_turns=1): every turn's "
            "observation is the task prompt. Use grpo, or an env with several turns "
            "(rollout.env_kwargs.max_turns >= 2)"
        )


def _build_models(config: TrainConfig, source: str) -> tuple[Any, Any, Any, Any]:
    """(model, tokenizer, critic, reference model) for a run starting from ``source``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agentrl.policy._common import resolve_model_path
    from agentrl.train.critic import Critic

    dtype = getattr(torch, config.model.dtype)
    if config.lora.r:  # base weights from model.path; adapters fresh, or the checkpoint's
        from agentrl.train.lora import is_adapter_dir, wrap_lora

        base = AutoModelForCausalLM.from_pretrained(resolve_model_path(config.model.path), dtype=dtype)
        model = wrap_lora(base, config.lora, adapter=source if is_adapter_dir(source) else None,
                          seed=config.trainer.seed)
        model.to(config.trainer.device)
    else:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype).to(config.trainer.device)
    tokenizer = AutoTokenizer.from_pretrained(source)
    critic = None
    if config.algo.critic != "none":
        critic = Critic(model, config.algo.critic, config.algo.critic_path, dtype=dtype)
        critic.to(config.trainer.device)
    ref = None
    if config.algo.kl_coef > 0:  # the frozen initial model (also when resuming)
        ref = AutoModelForCausalLM.from_pretrained(resolve_model_path(config.model.path), dtype=dtype)
        ref.to(config.trainer.device).eval().requires_grad_(False)
    return model, tokenizer, critic, ref


def _sync_module(config: TrainConfig, model: Any) -> Any:
    """What the sampler receives at each sync: the model, or a LoRA model's merged view."""
    if not config.lora.r:
        return model
    from agentrl.train.lora import MergedView

    return MergedView(model)


def _make_policy(config: TrainConfig, source: str) -> Any:
    from agentrl.policy import load_policy
    from agentrl.policy.base import WeightSync, require_capability

    r = config.rollout
    if r.backend == "openai":  # a vLLM server in dev mode; train() pushes the weights first
        policy = load_policy(f"openai:{r.server_url}", weight_sync="vllm-dev", checkpoint=source,
                             tokenizer=source, max_concurrency=r.concurrency)
        asyncio.run(policy.prepare())  # no dev mode: CapabilityError now, before any step
        return policy
    kw: dict[str, Any] = {"dtype": config.model.dtype}
    if r.backend == "vllm":
        kw.update(kv_cache_gib=r.kv_cache_gib, seed=config.trainer.seed,
                  max_model_len=r.max_context,
                  engine_kwargs={} if config.logging.verbose else {"use_tqdm_on_load": False})
    if r.workers:  # N Ray actors, each with its own sampler and envs (agentrl.serve.ray_rollout)
        import functools

        from agentrl.serve.ray_rollout import RayRolloutConfig, RayWorkerPool

        return RayWorkerPool(
            r.env, functools.partial(load_policy, f"{r.backend}:{source}", **kw),
            RayRolloutConfig(workers=r.workers, address=r.ray_address),
            env_kwargs=dict(r.env_kwargs), concurrency=r.concurrency).start()
    policy = load_policy(f"{r.backend}:{source}", **kw)
    require_capability(policy, WeightSync, "training")
    return policy


def _kl_into_rewards(batch: Any, ref_logp: torch.Tensor, config: TrainConfig) -> Any:
    """Subtract kl_coef * sum of each turn's per-token KL(sampler logprobs, reference)."""
    from agentrl import losses as L

    kl = L.KL_ESTIMATORS[config.algo.kl_estimator](batch.logprobs, ref_logp) * batch.mask
    n_turns = batch.turn_rewards.shape[1]
    per_turn = torch.zeros_like(batch.turn_rewards)
    idx = batch.turn_index.clamp(min=0)
    per_turn.scatter_add_(1, idx, kl * (batch.turn_index >= 0))
    per_turn = per_turn[:, :n_turns] * config.algo.kl_coef
    turn_rewards = batch.turn_rewards - per_turn
    last = (batch.turn_mask.sum(dim=1).long() - 1).clamp(min=0)
    return dataclasses.replace(
        batch, turn_rewards=turn_rewards, rewards=batch.rewards - per_turn.sum(dim=1),
        outcome=batch.outcome - per_turn.gather(1, last[:, None])[:, 0],
    )


def _rollout_metrics(trajs: Sequence[Any], batch: Any, adv: torch.Tensor) -> dict[str, float]:
    valid = [t for t in trajs if t.end_reason != "error"]
    rewards = [t.total_reward for t in valid]
    known = [bool(t.success) for t in valid if t.success is not None]
    m = batch.mask * batch.valid[:, None]
    on = m > 0
    groups: dict[str, list[float]] = {}
    for t in valid:
        groups.setdefault(t.group_id, []).append(t.total_reward)
    out = {
        "reward/mean": statistics.fmean(rewards) if rewards else float("nan"),
        "reward/std": statistics.pstdev(rewards) if len(rewards) > 1 else 0.0,
        "success/rate": statistics.fmean(known) if known else float("nan"),
        "episodes/total": float(len(trajs)),
        "episodes/invalid": float(len(trajs) - len(valid)),
        "episodes/truncated": float(sum(t.truncated for t in valid)),
        "groups/all_equal_frac": statistics.fmean(
            float(max(g) == min(g)) for g in groups.values()) if groups else float("nan"),
        "length/model_tokens_mean": statistics.fmean(t.num_model_tokens for t in valid) if valid else 0.0,
        "length/tokens_mean": statistics.fmean(len(t.token_ids) for t in valid) if valid else 0.0,
        "length/tokens_max": float(max((len(t.token_ids) for t in valid), default=0)),
        "turns/mean": statistics.fmean(t.num_turns for t in valid) if valid else 0.0,
        "adv/mean": float(adv[on].mean()) if on.any() else 0.0,
        "adv/std": float(adv[on].std()) if int(on.sum()) > 1 else 0.0,
        "adv/abs_max": float(adv[on].abs().max()) if on.any() else 0.0,
    }
    return out


def _prepare_run_dir(config: TrainConfig, resume: bool) -> tuple[Path, Path | None]:
    from agentrl.train.checkpoint import clean_partial, latest_checkpoint

    run_dir = Path(config.logging.run_dir)
    ckpt = latest_checkpoint(run_dir) if run_dir.is_dir() else None
    if not resume and (ckpt is not None or (run_dir / "metrics.jsonl").exists()):
        raise ConfigError(
            f"{run_dir} already holds a run; continue it with `agentrl train --resume {run_dir}` "
            "or choose another logging.run_dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    clean_partial(run_dir)
    return run_dir, ckpt


def train(config: TrainConfig, *, resume: bool = False, stop_after: int | None = None,
          policy: Any = None) -> RunResult:
    """Run (or continue, with ``resume``) the training run described by ``config``.

    Args:
        config: the run's settings (``RUN_DIR = config.logging.run_dir``).
        resume: continue from the last checkpoint in RUN_DIR (none yet: start fresh).
        stop_after: return after that many steps of this call (the run can be resumed).
        policy: an already running sampler with :class:`~agentrl.policy.base.WeightSync`
            on the same architecture (e.g. a shared engine in tests); it receives the
            learner's weights first and is not closed. Default: one is started from
            ``rollout.backend`` and closed at the end.

    Raises:
        ConfigError: a refused setting or env (before any model is loaded), or a run
            folder that already holds a run (without ``resume``).
        CapabilityError: the policy cannot take weight updates.
    """
    from agentrl.credit import build_credit_batch
    from agentrl.credit.registry import compute_advantages
    from agentrl.registry import make
    from agentrl.train.checkpoint import load_checkpoint, save_checkpoint
    from agentrl.train.data import SpecSource, append_specs, truncate_specs
    from agentrl.train.learner import Learner
    from agentrl.train.metrics import (
        MetricsLogger,
        PhaseTimer,
        mismatch_breakdown,
        truncate_metrics,
    )

    # -- 1. everything that can be refused is refused before any model is loaded
    env = make(config.rollout.env, **config.rollout.env_kwargs)
    try:
        _check_env(config, env)
        source_specs = SpecSource(env, seed=config.trainer.seed, eval_episodes=config.eval.episodes,
                                  eval_seed=config.eval.seed)
    finally:
        env.close()
    run_dir, ckpt = _prepare_run_dir(config, resume)
    save_config(config, run_dir / "config.yaml")
    _quiet_vllm(config.logging.verbose)

    # -- 2. learner (from the last checkpoint when resuming) and the sampling policy
    from agentrl.policy._common import resolve_model_path

    start_from = str(ckpt) if ckpt is not None else resolve_model_path(config.model.path)
    model, tokenizer, critic, ref = _build_models(config, start_from)
    learner = Learner(config, model, critic=critic, ref_model=ref)
    step, cursor, state = 0, 0, {}
    if ckpt is not None:
        state = load_checkpoint(ckpt, optimizer=learner.optimizer, scheduler=learner.scheduler,
                                critic=critic)
        step, cursor = int(state["step"]), int(state["cursor"])
        if state.get("config_hash") not in (None, _config_hash(config)):
            raise CheckpointError(
                f"{ckpt} was written by a run with different training settings; resume with "
                "the run's own config (RUN_DIR/config.yaml) or start a new run_dir"
            )
    truncate_metrics(run_dir / "metrics.jsonl", step)
    truncate_specs(run_dir, step)
    t_engine = time.perf_counter()
    own_policy = policy is None
    sync_model = _sync_module(config, learner.model)
    if own_policy:  # a LoRA run's engine serves the base model, then merged weights
        policy = _make_policy(config, resolve_model_path(config.model.path) if config.lora.r
                              else start_from)
    else:
        from agentrl.policy.base import WeightSync, require_capability

        require_capability(policy, WeightSync, "training")
    if (not own_policy or (config.lora.r and ckpt is not None)
            or config.rollout.backend == "openai"):  # a server holds what it started with
        policy.update_weights(sync_model, verify=config.rollout.verify_sync,
                              atol=config.rollout.sync_atol)
    engine_start_s = time.perf_counter() - t_engine
    log = MetricsLogger(run_dir, tensorboard=config.logging.tensorboard,
                        progress=config.logging.progress, total_steps=config.trainer.steps,
                        initial_step=step)
    result = RunResult(run_dir=run_dir, steps=step, checkpoint=ckpt)
    eval_path = run_dir / "eval.json"
    evals: dict[str, Any] = json.loads(eval_path.read_text()) if eval_path.is_file() else {}
    held_out = source_specs.held_out(config.eval.episodes) if config.eval.episodes else []
    feed = None  # trainer.mode=async: batches generated ahead (agentrl.train.async_loop)
    try:
        if held_out and "before" not in evals:
            evals["before"] = evaluate(config, policy, held_out)
            eval_path.write_text(json.dumps(evals, indent=1))
            log.write(f"held-out before: {_fmt(evals['before'])}")
        result.eval_before = evals.get("before")
        log.write(f"engine start {engine_start_s:.1f} s; training steps {step + 1}..{config.trainer.steps}")

        # -- 3. the loop
        if config.trainer.mode == "async":
            from agentrl.train.async_loop import AsyncFeed

            feed = AsyncFeed(config, policy, source_specs, step, cursor)
        done_here = 0
        while step < config.trainer.steps and (stop_after is None or done_here < stop_after):
            step += 1
            timer = PhaseTimer()
            specs = source_specs.take(cursor, config.rollout.tasks_per_step)
            with timer("collect"):
                if feed is None:
                    trajs = asyncio.run(_collect(config.rollout.env, policy, specs,
                                                 rollout_config(config, step)))
                else:  # generated while earlier updates ran; staleness checked
                    trajs, feed_metrics = feed.take(step)
            append_specs(run_dir, step, cursor, specs)
            cursor += len(specs)

            with timer("credit"):
                pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
                batch = build_credit_batch(trajs, pad_id=pad)
                scored = learner.score(batch)
                if config.algo.kl_in_reward and scored.ref_logp is not None:
                    batch = _kl_into_rewards(batch, scored.ref_logp, config)
                res = compute_advantages(config.algo.advantage, batch, values=scored.values,
                                         **dict(config.algo.advantage_params))
            metrics = _rollout_metrics(trajs, batch, res.advantages)
            if feed is not None:
                metrics.update(feed_metrics)
            n_valid = int(batch.valid.sum())
            if n_valid:
                gen = torch.Generator().manual_seed(config.trainer.seed * 1_000_003 + step)
                with timer("update"):
                    metrics.update(learner.update(batch, res.advantages, res.returns, scored, gen))
                metrics.update(mismatch_breakdown(
                    learner.last_learner_logp, batch.logprobs,
                    batch.mask * batch.valid[:, None],
                    batch.turn_index))
                with timer("sync"):
                    diff = policy.update_weights(sync_model, verify=config.rollout.verify_sync,
                                                 atol=config.rollout.sync_atol)
                if diff is not None:
                    metrics["sync/max_abs_diff"] = float(diff)
            else:
                log.write(f"step {step}: every episode errored ({trajs[0].error!r:.200}); no update")
            metrics["sync/weight_version"] = float(getattr(policy, "weight_version", step))
            if feed is not None:
                feed.updated(step)  # the next batch may start on the new weights
            metrics.update(timer.times)
            gen_tokens = sum(t.num_model_tokens for t in trajs)
            metrics["throughput/gen_tokens_per_s"] = gen_tokens / max(timer.times["time/collect_s"], 1e-9)
            if "time/update_s" in timer.times:
                all_tokens = float(batch.attention_mask.sum()) * learner.updates_per_batch
                metrics["throughput/learner_tokens_per_s"] = all_tokens / max(timer.times["time/update_s"], 1e-9)

            if config.checkpoint.every and step % config.checkpoint.every == 0 or step == config.trainer.steps:
                with timer("checkpoint"):
                    result.checkpoint = save_checkpoint(
                        run_dir, step, model=learner.model, tokenizer=tokenizer,
                        optimizer=learner.optimizer, scheduler=learner.scheduler, critic=critic,
                        state={"cursor": cursor, "config_hash": _config_hash(config)},
                        keep=config.checkpoint.keep)
                metrics["time/checkpoint_s"] = timer.times["time/checkpoint_s"]
            log.log(step, metrics)
            log.progress(step, metrics)
            result.last_metrics = metrics
            result.steps = step
            done_here += 1

        # -- 4. held-out evaluation after training
        if held_out and step >= config.trainer.steps:
            evals["after"] = evaluate(config, policy, held_out)
            eval_path.write_text(json.dumps(evals, indent=1))
            log.write(f"held-out after:  {_fmt(evals['after'])}")
        result.eval_after = evals.get("after")
    finally:
        if feed is not None:
            feed.close()
        log.close()
        if own_policy:
            policy.close()
    return result


def _fmt(d: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3g}" for k, v in d.items())


def _config_hash(config: TrainConfig) -> str:
    """Identity of the settings that decide the run's trajectory (not its logging/length)."""
    import hashlib

    from agentrl.train.config import config_to_yaml

    parts = dataclasses.replace(
        config,
        logging=type(config.logging)(),
        trainer=dataclasses.replace(config.trainer, steps=1),
        checkpoint=type(config.checkpoint)(),
    )
    return hashlib.sha256(config_to_yaml(parts).encode()).hexdigest()[:16]
