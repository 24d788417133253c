"""Supervised training on trajectories: loss only on model tokens, sequences packed.

``agentrl sft --data FILE.jsonl`` trains on recorded trajectories (the ``loss_mask`` of
each one marks the tokens the model generated: those, and only those, are trained on);
``agentrl sft --env ID --episodes N`` trains on oracle demonstrations of an env
(:mod:`agentrl.train.demos`). Several trajectories are packed into one row; position ids
restart at each trajectory, and transformers then builds a block-diagonal causal mask
(no attention across trajectories), so a packed row gives the same loss as the
trajectories one by one (tested).

The result is a Hugging Face checkpoint folder (``save_pretrained`` + tokenizer) in
``OUT/checkpoints/step_N``, loadable with ``from_pretrained`` and as ``vllm:PATH``;
per-step metrics go to ``OUT/metrics.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentrl.errors import ConfigError
from agentrl.trajectory import Trajectory

__all__ = [
    "SFTConfig",
    "SFTResult",
    "PackedRow",
    "pack_trajectories",
    "packed_batch",
    "masked_nll",
    "run_sft",
    "add_arguments",
    "main",
]


@dataclass(frozen=True)
class SFTConfig:
    """What ``agentrl sft`` trains, on what data, and how."""

    model: str = "tiny"
    """Checkpoint folder, hub id, or ``tiny`` (the built-in tiny chat model)."""
    data: str | None = None
    """JSONL file of trajectories to train on (exclusive with ``env``)."""
    env: str | None = None
    """Env id whose oracle demonstrations to train on (exclusive with ``data``)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for making ``env``."""
    episodes: int = 256
    """Oracle demonstrations to generate (env seeds ``demo_seed .. demo_seed + episodes - 1``)."""
    demo_seed: int = 1_000_000
    """First env seed of the demonstrations (keep them apart from evaluation seeds)."""
    steps: int = 100
    """Optimizer steps."""
    rows_per_step: int = 8
    """Packed rows per optimizer step."""
    row_tokens: int = 2048
    """Length of one packed row; longer trajectories are cut to it (counted in metrics)."""
    lr: float = 1e-3
    """Peak AdamW learning rate."""
    warmup_steps: int = 5
    """Linear warm-up steps, then cosine decay to ``min_lr_ratio * lr``."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of ``lr``."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Gradient-norm clip (0 disables)."""
    seed: int = 0
    """Seed of data order and of torch."""
    dtype: str = "float32"
    """Training dtype of the weights (``float32`` or ``bfloat16``)."""
    lora_r: int = 0
    """LoRA rank (0 = full fine-tuning; > 0 needs ``peft``, merged before saving)."""
    out: str = "runs/sft"
    """Run folder: ``metrics.jsonl``, ``config.json``, ``checkpoints/step_N``."""
    log_every: int = 10
    """Print a progress line every this many steps (0 = quiet)."""

    def __post_init__(self) -> None:
        if (self.data is None) == (self.env is None):
            raise ConfigError("give exactly one of data (a trajectory JSONL file) or env (an env id with an oracle)")
        for name in ("episodes", "steps", "rows_per_step", "row_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"SFTConfig.{name} must be an int >= 1, got {value!r}")
        if self.warmup_steps < 0 or self.log_every < 0 or self.lora_r < 0:
            raise ConfigError("warmup_steps, log_every and lora_r must be >= 0")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ConfigError("grad_clip and weight_decay must be >= 0")
        if self.dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"dtype must be float32 or bfloat16, got {self.dtype!r}")


@dataclass(frozen=True)
class PackedRow:
    """Several trajectories laid end to end in one training row."""

    input_ids: list[int]
    """Token ids of the packed trajectories."""
    loss_mask: list[int]
    """1 where the token is a model token (a training target)."""
    position_ids: list[int]
    """Positions restarting at 0 at each trajectory (block-diagonal attention)."""


@dataclass
class SFTResult:
    """What :func:`run_sft` did."""

    checkpoint: Path | None
    """Folder of the saved model (None when nothing was saved)."""
    losses: list[float]
    """Mean masked token loss of every step."""
    trained_tokens: int
    """Model tokens trained on per epoch of the data."""
    cut_trajectories: int
    """Trajectories cut to ``row_tokens``."""
    time_s: float
    """Wall time of the training steps."""


# ----------------------------------------------------------------------------- packing

def pack_trajectories(
    trajectories: Sequence[Trajectory], row_tokens: int
) -> tuple[list[PackedRow], int]:
    """Pack trajectories into rows of at most ``row_tokens`` tokens (first-fit decreasing).

    Returns the rows and how many trajectories were cut to ``row_tokens``. Trajectories
    without model tokens are skipped (nothing to learn from them).
    """
    if row_tokens < 2:
        raise ConfigError(f"row_tokens must be >= 2, got {row_tokens}")
    items: list[tuple[list[int], list[int]]] = []
    cut = 0
    for traj in trajectories:
        if not any(traj.loss_mask):
            continue
        ids, mask = list(traj.token_ids), list(traj.loss_mask)
        if len(ids) > row_tokens:
            ids, mask, cut = ids[:row_tokens], mask[:row_tokens], cut + 1
        items.append((ids, mask))
    items.sort(key=lambda it: -len(it[0]))
    rows: list[list[tuple[list[int], list[int]]]] = []
    free: list[int] = []
    for item in items:
        n = len(item[0])
        slot = next((i for i, room in enumerate(free) if room >= n), None)
        if slot is None:
            rows.append([item])
            free.append(row_tokens - n)
        else:
            rows[slot].append(item)
            free[slot] -= n
    packed = []
    for row in rows:
        ids = [t for it in row for t in it[0]]
        mask = [m for it in row for m in it[1]]
        pos = [p for it in row for p in range(len(it[0]))]
        packed.append(PackedRow(ids, mask, pos))
    return packed, cut


def packed_batch(rows: Sequence[PackedRow], pad_id: int) -> dict[str, Any]:
    """Tensors of a list of rows, right-padded (padding: its own position run, mask 0)."""
    import torch

    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width)
    pos = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r.input_ids)
        ids[i, :n] = torch.tensor(r.input_ids)
        mask[i, :n] = torch.tensor(r.loss_mask, dtype=torch.float32)
        pos[i, :n] = torch.tensor(r.position_ids)
        pos[i, n:] = torch.arange(width - n)
    return {"input_ids": ids, "loss_mask": mask, "position_ids": pos}


def masked_nll(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """(sum of -log p(token) over masked tokens, number of masked tokens).

    Token ``t`` is predicted from tokens ``< t`` of its own trajectory (the packed rows'
    position ids make transformers use a block-diagonal mask; that needs
    ``attention_mask=None`` and no KV cache).
    """
    import torch

    logits = model(
        input_ids=batch["input_ids"], position_ids=batch["position_ids"], attention_mask=None,
        use_cache=False,  # with a cache, transformers ignores the packing in the position ids
    ).logits.float()
    targets = batch["input_ids"][:, 1:]
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, targets[..., None])[..., 0]
    mask = batch["loss_mask"][:, 1:]
    return -(logp * mask).sum(), mask.sum()


# ----------------------------------------------------------------------------- training

def _lr_at(step: int, cfg: SFTConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.min_lr_ratio
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def load_data(cfg: SFTConfig, tokenizer: Any) -> list[Trajectory]:
    """The training trajectories: the JSONL file, or freshly made oracle demonstrations."""
    if cfg.data is not None:
        from agentrl.trajectory import load_jsonl

        path = Path(cfg.data)
        if not path.is_file():
            raise ConfigError(f"--data {path}: no such file (expected a trajectory JSONL file)")
        trajs = load_jsonl(path)
        if not trajs:
            raise ConfigError(f"--data {path} holds no trajectories")
        return trajs
    from agentrl.train.demos import oracle_demos

    assert cfg.env is not None  # guaranteed by SFTConfig's check
    seeds = range(cfg.demo_seed, cfg.demo_seed + cfg.episodes)
    return oracle_demos(cfg.env, tokenizer, seeds, env_kwargs=cfg.env_kwargs)


def _load_model(cfg: SFTConfig) -> tuple[Any, Any, str]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agentrl.policy._common import resolve_model_path

    path = str(resolve_model_path(cfg.model))
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, cfg.dtype))
    return model, tokenizer, path


def _with_lora(model: Any, rank: int) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise ConfigError("lora_r > 0 needs peft: pip install 'agentrl[lora]'") from exc
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear")
    return get_peft_model(model, config)


def save_checkpoint(model: Any, tokenizer: Any, folder: Path) -> Path:
    """Save a ``from_pretrained``-loadable folder atomically (temp folder, then rename)."""
    import shutil
    import tempfile

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    if hasattr(model, "merge_and_unload"):  # peft: save plain merged weights
        model = model.merge_and_unload()
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def run_sft(
    cfg: SFTConfig,
    *,
    model: Any = None,
    tokenizer: Any = None,
    trajectories: Sequence[Trajectory] | None = None,
    save: bool = True,
) -> SFTResult:
    """Train ``cfg.model`` (or the given ``model``) on trajectories; return losses and checkpoint.

    ``model``/``tokenizer``/``trajectories`` let a caller (the default training run,
    tests) pass objects it already holds; otherwise they come from ``cfg``.
    """
    import torch

    if model is None or tokenizer is None:
        model, tokenizer, _ = _load_model(cfg)
    if cfg.lora_r:
        model = _with_lora(model, cfg.lora_r)
    data = list(trajectories) if trajectories is not None else load_data(cfg, tokenizer)
    rows, cut = pack_trajectories(data, cfg.row_tokens)
    if not rows:
        raise ConfigError("no trajectory has model tokens (loss_mask is all 0): nothing to train on")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # the lr schedule as a scheduler object, so that checkpoints hold it like the RL trainer's
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_at(s, cfg) / cfg.lr)
    model.train()
    order: list[int] = []
    losses: list[float] = []
    t0 = time.perf_counter()
    from agentrl.train.metrics import MetricsLogger

    (out / "metrics.jsonl").unlink(missing_ok=True)  # a new run (SFT has no resume)
    log = MetricsLogger(out, tensorboard=False, progress=False)  # the RL trainer's format
    try:
        for step in range(cfg.steps):
            picked = []
            for _ in range(min(cfg.rows_per_step, len(rows))):
                if not order:
                    order = list(range(len(rows)))
                    rng.shuffle(order)
                picked.append(rows[order.pop()])
            batch = packed_batch(picked, pad_id)
            nll, count = masked_nll(model, batch)
            loss = nll / count.clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                params, cfg.grad_clip if cfg.grad_clip else float("inf")
            )
            lr = sched.get_last_lr()[0]
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            log.log(step + 1, {"sft/loss": losses[-1], "sft/grad_norm": float(grad_norm),
                               "sft/lr": lr, "sft/tokens": float(count), "time_s": time.perf_counter() - t0})
            if cfg.log_every and ((step + 1) % cfg.log_every == 0 or step == 0):
                print(f"sft step {step + 1}/{cfg.steps}  loss {losses[-1]:.4f}  lr {lr:.2e}", flush=True)
    finally:
        log.close()
    elapsed = time.perf_counter() - t0
    model.eval()
    checkpoint = None
    if save:
        from agentrl.train.checkpoint import save_checkpoint as save_train_checkpoint

        if hasattr(model, "merge_and_unload"):  # peft: save plain merged weights
            model = model.merge_and_unload()
        # the RL trainer's checkpoint: HF folder + optimizer, scheduler, RNG, state.json
        checkpoint = save_train_checkpoint(
            out, cfg.steps, model=model, tokenizer=tokenizer, optimizer=opt, scheduler=sched,
            state={"cursor": cfg.steps * cfg.rows_per_step, "kind": "sft"}, keep=1)
    return SFTResult(checkpoint, losses, sum(sum(r.loss_mask) for r in rows), cut, elapsed)


# ----------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``agentrl sft``."""
    d = SFTConfig.__dataclass_fields__
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="JSONL trajectory file (loss on each trajectory's loss_mask)")
    src.add_argument("--env", help="env id: train on its oracle demonstrations, e.g. agentrl/Calculator-v0")
    parser.add_argument("--model", default="tiny", help="checkpoint folder, hub id or 'tiny' (default tiny)")
    parser.add_argument("--env-kwargs", default="{}", help="JSON object of env keyword arguments")
    parser.add_argument("--episodes", type=int, default=d["episodes"].default, help="oracle demonstrations (default 256)")
    parser.add_argument("--steps", type=int, default=d["steps"].default, help="optimizer steps (default 100)")
    parser.add_argument("--rows-per-step", type=int, default=d["rows_per_step"].default, help="packed rows per step (default 8)")
    parser.add_argument("--row-tokens", type=int, default=d["row_tokens"].default, help="tokens per packed row (default 2048)")
    parser.add_argument("--lr", type=float, default=d["lr"].default, help="peak learning rate (default 1e-3)")
    parser.add_argument("--lora-r", type=int, default=0, help="LoRA rank (0 = full fine-tuning; needs peft)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="training dtype")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--out", default="runs/sft", help="run folder (default runs/sft)")


def main(args: argparse.Namespace) -> int:
    """Run ``agentrl sft``; print where the checkpoint is."""
    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--env-kwargs is not valid JSON: {exc}") from exc
    if not isinstance(env_kwargs, dict):
        raise ConfigError("--env-kwargs must be a JSON object")
    cfg = SFTConfig(
        model=args.model, data=args.data, env=args.env, env_kwargs=env_kwargs,
        episodes=args.episodes, steps=args.steps, rows_per_step=args.rows_per_step,
        row_tokens=args.row_tokens, lr=args.lr, lora_r=args.lora_r, dtype=args.dtype,
        seed=args.seed, out=args.out,
    )
    result = run_sft(cfg)
    first, last = result.losses[0], result.losses[-1]
    print(f"sft: {cfg.steps} steps in {result.time_s:.1f}s, loss {first:.4f} -> {last:.4f}; "
          f"{result.trained_tokens} model tokens per epoch"
          + (f", {result.cut_trajectories} trajectories cut to {cfg.row_tokens} tokens" if result.cut_trajectories else ""))
    print(f"checkpoint: {result.checkpoint}  (use as vllm:{result.checkpoint} or hf:{result.checkpoint})")
    return 0
