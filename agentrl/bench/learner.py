"""``agentrl bench learner``: time per optimizer step of our GRPO learner against TRL's GRPOTrainer.

Both sides train the same model (two copies of the same weights) on the same batch: ``--batch``
episodes of a ``--prompt``-token prompt and a completion of up to ``--completion`` tokens
(lengths drawn per episode, groups of ``--group``), GRPO advantages from random rewards,
one epoch of one minibatch (one optimizer step per batch), PPO clip 0.2/0.28, token-mean
aggregation over the batch (TRL ``loss_type="bnpo"``), no KL, no sampler IS correction,
AdamW with the same settings, gradient clipping at 1.0, CPU, float32.

* **agentrl**: :class:`agentrl.train.learner.Learner` ``.update`` on a CreditBatch
  (``token_logprobs`` forward over prompt + completion, loss, backward, clip, step);
* **TRL**: ``GRPOTrainer._compute_loss`` (TRL's own forward with its fused LM head,
  added by ``trl.trainer.utils.add_fused_lm_head`` as its constructor does) on a trainer
  object whose constructor is bypassed (no dataset, no accelerate launcher; the same way
  tests/losses/test_trl_crosscheck.py drives it), then backward, clip and AdamW step:
  what ``Trainer.training_step`` + the optimizer step do in one process.

The steps alternate (ours, TRL's, ours, ...) so that load on the machine hits both
alike; the first step of each is a warm-up. The loss of the first step (same weights,
same batch) and the largest weight difference after it are the equality check. TRL must
be importable (``pip install --no-deps trl accelerate datasets ...``, as for the
cross-check tests).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import types
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from agentrl.errors import ConfigError

__all__ = ["run_learner_bench", "add_arguments", "main"]


def _batch(args: argparse.Namespace, vocab: int) -> tuple[Any, list[int]]:
    from agentrl.credit import build_credit_batch
    from agentrl.trajectory import Trajectory, Turn

    gen = torch.Generator().manual_seed(args.seed)
    trajs, lengths = [], []
    for i in range(args.batch):
        n = int(torch.randint(args.completion // 2, args.completion + 1, (1,), generator=gen))
        ids = torch.randint(3, vocab, (args.prompt + n,), generator=gen).tolist()
        reward = float(torch.rand(1, generator=gen))
        trajs.append(Trajectory(env_id="bench", token_ids=ids, loss_mask=[0] * args.prompt + [1] * n,
                                logprobs=[0.0] * len(ids), prompt_len=args.prompt,
                                turns=[Turn(args.prompt, args.prompt + n, reward)], group_id=f"g{i // args.group}"))
        lengths.append(n)
    return build_credit_batch(trajs, pad_id=0), lengths


def _trl_probe(batch_size: int, group: int) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from trl.trainer.grpo_trainer import GRPOTrainer
        except ImportError as exc:
            raise ConfigError("agentrl bench learner needs TRL: pip install --no-deps trl accelerate "
                              "datasets pandas pyarrow multiprocess xxhash tzdata") from exc

    class Accel:  # one process: gathers are identities
        device = torch.device("cpu")
        num_processes = 1
        process_index = 0
        is_main_process = True

        def autocast(self) -> Any:
            import contextlib

            return contextlib.nullcontext()

        def gather(self, x: Any) -> Any:
            return x

        gather_for_metrics = gather

        def reduce(self, x: Any, reduction: str = "sum") -> Any:
            return x

    class Probe(GRPOTrainer):
        def __init__(self, **attrs: Any) -> None:  # no dataset, no accelerate launcher
            self.__dict__.update(attrs)

    return Probe(
        accelerator=Accel(), model=types.SimpleNamespace(training=True),
        args=types.SimpleNamespace(delta=None, use_bias_correction_kl=False, steps_per_generation=1),
        loss_type="bnpo", importance_sampling_level="token", epsilon_low=0.2, epsilon_high=0.28, beta=0.0,
        use_vllm=False, vllm_importance_sampling_correction=False, top_entropy_quantile=1.0,
        off_policy_mask_threshold=None, aux_loss_enabled=False, _entropy_bonus_enabled=False,
        use_adaptive_entropy=False,
        current_gradient_accumulation_steps=1, num_generations=group, max_completion_length=batch_size,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    )


def run_learner_bench(args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    from agentrl.credit.registry import compute_advantages
    from agentrl.policy._common import resolve_model_path
    from agentrl.train.config import load_config
    from agentrl.train.learner import Learner, Scored

    path = str(resolve_model_path(args.model))
    torch.manual_seed(args.seed)
    ours_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    trl_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    vocab = int(ours_model.config.get_text_config().vocab_size)
    batch, lengths = _batch(args, vocab)
    cfg = load_config(overrides=[
        f"model.path={path}", f"rollout.tasks_per_step={args.batch // args.group}",
        f"rollout.group_size={args.group}", f"trainer.micro_batch_size={args.batch}",
        f"trainer.steps={args.repeats + 1}", "trainer.lr=1e-4", "trainer.min_lr_ratio=1.0",
        "algo.is_correction=none", "algo.clip_low=0.2", "algo.clip_high=0.28", "algo.aggregation=token-mean",
        "trainer.max_grad_norm=1.0"])
    adv = compute_advantages("grpo", batch).advantages
    learner = Learner(cfg, ours_model)

    from trl.trainer.utils import add_fused_lm_head

    add_fused_lm_head(trl_model, temperature=1.0, outputs=("log_probs", "entropy"))
    trl_model.eval()  # the learner runs without dropout too
    probe = _trl_probe(args.completion, args.group)
    trl_opt = torch.optim.AdamW(trl_model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    width = max(lengths)
    p = args.prompt
    comp = torch.zeros(args.batch, width, dtype=torch.long)
    cmask = torch.zeros(args.batch, width, dtype=torch.long)
    for i, n in enumerate(lengths):
        comp[i, :n] = batch.token_ids[i, p:p + n]
        cmask[i, :n] = 1
    inputs = {"prompt_ids": batch.token_ids[:, :p].clone(), "prompt_mask": torch.ones(args.batch, p, dtype=torch.long),
              "completion_ids": comp, "completion_mask": cmask,
              "advantages": adv[torch.arange(args.batch), p].clone(), "num_items_in_batch": cmask.sum()}

    def ours_step() -> float:
        m = learner.update(batch, adv, None, Scored(None, None, None))
        return float(m["loss/total"])

    def trl_step() -> float:
        trl_opt.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loss = probe._compute_loss(trl_model, inputs)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trl_model.parameters(), 1.0)
        trl_opt.step()
        return float(loss.detach())

    times: dict[str, list[float]] = {"agentrl": [], "trl": []}
    losses: dict[str, list[float]] = {"agentrl": [], "trl": []}
    for _ in range(args.repeats + 1):
        for name, fn in (("agentrl", ours_step), ("trl", trl_step)):
            t0 = time.perf_counter()
            losses[name].append(fn())
            times[name].append(time.perf_counter() - t0)
        if len(losses["agentrl"]) == 1:  # after the first step on the same weights and batch
            a, b = ours_model.state_dict(), trl_model.state_dict()
            weight_diff = max(float((a[k] - b[k]).abs().max()) for k in a if k in b)
    med = {k: statistics.median(v[1:]) for k, v in times.items()}
    return {
        "model": Path(path).name, "batch": args.batch, "group": args.group, "prompt_tokens": args.prompt,
        "completion_tokens_max": args.completion, "model_tokens": int(cmask.sum()), "repeats": args.repeats,
        "step_s_median": med, "step_s_all": {k: v[1:] for k, v in times.items()},
        "ratio_agentrl_over_trl": med["agentrl"] / med["trl"],
        "first_loss": {k: v[0] for k, v in losses.items()},
        "first_loss_abs_diff": abs(losses["agentrl"][0] - losses["trl"][0]),
        "weight_max_abs_diff_after_first_step": weight_diff,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="tiny", help="model folder or 'tiny' (default tiny)")
    parser.add_argument("--batch", type=int, default=16, help="episodes per step (default 16)")
    parser.add_argument("--group", type=int, default=4, help="episodes per GRPO group (default 4)")
    parser.add_argument("--prompt", type=int, default=64, help="prompt tokens (default 64)")
    parser.add_argument("--completion", type=int, default=192, help="most completion tokens (default 192)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per side (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of batch and rewards (default 0)")
    parser.add_argument("--out", default="runs/bench-learner.json", help="JSON output")


def main(args: argparse.Namespace) -> int:
    if args.batch % args.group:
        raise ConfigError(f"--batch {args.batch} must be a multiple of --group {args.group}")
    r = run_learner_bench(args)
    med = r["step_s_median"]
    print(f"model {r['model']}, batch {r['batch']} x ({r['prompt_tokens']} prompt + <= {r['completion_tokens_max']} "
          f"completion tokens), {r['repeats']} timed steps each, CPU fp32")
    print(f"{'learner':<10} {'step s (median)':>16} {'min':>8} {'max':>8} {'first loss':>14}")
    for k in ("agentrl", "trl"):
        v = r["step_s_all"][k]
        print(f"{k:<10} {med[k]:>16.3f} {min(v):>8.3f} {max(v):>8.3f} {r['first_loss'][k]:>14.8f}")
    print(f"agentrl / TRL step time: {r['ratio_agentrl_over_trl']:.2f}x (target <= 0.8x); first-step loss "
          f"|diff| {r['first_loss_abs_diff']:.2e}, weights after it max |diff| "
          f"{r['weight_max_abs_diff_after_first_step']:.2e}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(r, indent=1))
    print(f"written: {args.out}")
    return 0
