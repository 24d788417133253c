"""The default run of ``agentrl train``: a tiny model learns GuessNumber on the CPU.

Three phases, each measured on the same held-out episodes (seeds no training phase uses):

1. **start**: the locally built tiny chat model (random weights) is evaluated;
2. **SFT warm-start**: a short supervised run on oracle demonstrations (binary search,
   played through the real chat template, :mod:`agentrl.train.demos`). The budget is
   deliberately small: the model learns the format and a rough strategy, not the oracle;
3. **RL**: the trainer's loop (:func:`agentrl.train.loop.train`) continues from the
   warm-started checkpoint with GRPO on the env's rewards.

Everything lands in ``RUN_DIR`` (default ``runs/default``): ``sft/`` (SFT metrics and
checkpoint), ``rl/`` (the trainer's run folder: metrics, checkpoints, plots),
``summary.json`` (held-out success and reward of the three phases, wall times) and
``learning.png``. ``agentrl train sft.steps=40 trainer.steps=10`` shortens it; keys
starting with ``sft.`` set :class:`RecipeConfig` fields, the others the RL phase's
:class:`~agentrl.train.config.TrainConfig`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentrl.errors import ConfigError
from agentrl.train.config import TrainConfig, load_config

__all__ = [
    "DEFAULT_RUN_DIR",
    "RecipeConfig",
    "default_config",
    "default_recipe",
    "is_recipe_file",
    "load_recipe",
    "run_default",
    "run_recipe",
]

DEFAULT_RUN_DIR = "runs/default"

#: The RL phase of the default run (dotted overrides of TrainConfig's defaults).
_RL_SETTINGS: tuple[str, ...] = (
    "rollout.env=agentrl/GuessNumber-v0",
    "rollout.env_kwargs.high=16",
    "rollout.env_kwargs.max_turns=5",
    "rollout.max_turns=5",
    "rollout.max_new_tokens=16",
    "rollout.max_context=512",
    "rollout.tasks_per_step=8",
    "rollout.group_size=8",
    "rollout.temperature=1.0",
    "rollout.truncate_on_length=false",
    "algo.advantage=grpo",
    "trainer.steps=40",
    "trainer.lr=2e-4",
    "trainer.micro_batch_size=64",
    "trainer.warmup_steps=0",
    "trainer.min_lr_ratio=1.0",
    "checkpoint.every=20",
    "eval.episodes=200",
    "eval.seed=900000000",
    "eval.temperature=1.0",
    f"logging.run_dir={DEFAULT_RUN_DIR}/rl",
)


@dataclass(frozen=True)
class RecipeConfig:
    """The default run: model, SFT warm-start, and the RL phase's config."""

    model: str = "tiny"
    """Starting checkpoint: a folder, a hub id, or ``tiny`` (the built-in tiny chat model)."""
    run_dir: str = DEFAULT_RUN_DIR
    """Folder of the whole run (``sft/``, ``rl/``, ``summary.json``, ``learning.png``)."""
    sft_steps: int = 60
    """SFT optimizer steps on oracle demonstrations (0 skips the warm-start)."""
    sft_demos: int = 1024
    """Oracle demonstrations generated for SFT."""
    sft_lr: float = 3e-3
    """Peak SFT learning rate."""
    sft_rows_per_step: int = 4
    """Packed rows per SFT step."""
    sft_row_tokens: int = 2048
    """Tokens per packed SFT row."""
    sft_lora_r: int = 0
    """LoRA rank of the warm-start (0: full fine-tuning; adapters are merged before RL)."""
    sft_dtype: str | None = None
    """Warm-start dtype (None: the RL phase's ``model.dtype``)."""
    demo_seed: int = 800_000_000
    """First env seed of the demonstrations (apart from training and held-out seeds)."""
    train: TrainConfig = dataclasses.field(default_factory=lambda: default_config())
    """The RL phase (the trainer's config; its ``model.path`` is replaced by the SFT checkpoint)."""

    def __post_init__(self) -> None:
        if self.sft_steps < 0 or self.sft_demos < 1:
            raise ConfigError("sft.steps must be >= 0 and sft.demos >= 1")
        if self.train.eval.episodes < 1:
            raise ConfigError("the default run measures held-out success: set eval.episodes >= 1")
        low, high = self.demo_seed, self.demo_seed + self.sft_demos
        ev = self.train.eval.seed
        if low < ev + self.train.eval.episodes and ev < high:
            raise ConfigError(
                f"demonstration seeds {low}..{high - 1} overlap the held-out seeds from {ev}: "
                "change sft.demo_seed or eval.seed"
            )


def default_config() -> TrainConfig:
    """The RL phase of the default run (``agentrl train --print-config`` prints it)."""
    return load_config(overrides=list(_RL_SETTINGS))


def default_recipe(overrides: Sequence[str] = (), *, base: TrainConfig | None = None) -> RecipeConfig:
    """The default run with ``key=value`` overrides (``sft.*``: recipe fields; else TrainConfig)."""
    recipe_kw: dict[str, Any] = {}
    train_overrides: list[str] = []
    fields = {f.name: f for f in dataclasses.fields(RecipeConfig)}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"overrides must look like key=value (e.g. sft.steps=40), got {item!r}")
        if key.startswith("sft."):
            name = "sft_" + key[4:] if key[4:] not in ("demo_seed",) else key[4:]
            if key[4:] == "model":
                name = "model"
            if name not in fields or name == "train":
                known = ", ".join(f"sft.{n.removeprefix('sft_')}" for n in fields if n != "train")
                raise ConfigError(f"unknown recipe key {key!r}; known: {known}")
            kind = {"int": int, "float": float}.get(str(fields[name].type), str)
            try:
                recipe_kw[name] = kind(value) if kind is not str else value
            except ValueError as exc:
                raise ConfigError(f"{key}: cannot read {value!r} as {kind.__name__}") from exc
        elif key == "run_dir":
            recipe_kw["run_dir"] = value
        else:
            train_overrides.append(item)
    run_dir = recipe_kw.get("run_dir", DEFAULT_RUN_DIR)
    base = base if base is not None else default_config()
    if not any(o.startswith("logging.run_dir=") for o in train_overrides):
        train_overrides.append(f"logging.run_dir={Path(run_dir) / 'rl'}")
    train = load_config(overrides=train_overrides, base=base)
    return RecipeConfig(train=train, **recipe_kw)


def is_recipe_file(path: str | Path) -> bool:
    """True when a YAML config has a top-level ``sft:`` section (a whole recipe)."""
    from omegaconf import OmegaConf

    if not Path(path).is_file():
        raise ConfigError(f"config file {path} does not exist")
    raw = OmegaConf.load(path)
    return bool(OmegaConf.is_dict(raw) and "sft" in raw)


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> RecipeConfig:
    """A recipe from YAML: ``sft:`` (warm-start keys, e.g. ``model``, ``steps``, ``lora_r``),
    optional ``run_dir:``, and the RL phase's :class:`TrainConfig` sections (merged over
    :class:`TrainConfig`'s own defaults); ``key=value`` overrides as for the default run."""
    import tempfile

    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(OmegaConf.load(path))
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a YAML mapping")
    sft = raw.pop("sft", None) or {}
    if not isinstance(sft, dict):
        raise ConfigError(f"{path}: 'sft:' must be a mapping of warm-start keys")
    head = [f"sft.{k}={v}" for k, v in sft.items()]
    if "run_dir" in raw:
        head.append(f"run_dir={raw.pop('run_dir')}")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(OmegaConf.to_yaml(OmegaConf.create(raw)))
    try:
        base = load_config(fh.name)
    finally:
        os.unlink(fh.name)
    return default_recipe([*head, *overrides], base=base)


def _held_out(train: TrainConfig) -> list[Any]:
    from agentrl.registry import make
    from agentrl.train.data import SpecSource

    env = make(train.rollout.env, **train.rollout.env_kwargs)
    try:
        source = SpecSource(env, seed=train.trainer.seed, eval_episodes=train.eval.episodes,
                            eval_seed=train.eval.seed)
    finally:
        env.close()
    return source.held_out(train.eval.episodes)


def _evaluate_start(recipe: RecipeConfig, model_path: str, specs: list[Any]) -> dict[str, float]:
    from agentrl.train.loop import _make_policy, _quiet_vllm, evaluate

    train = recipe.train
    _quiet_vllm(train.logging.verbose)
    policy = _make_policy(train, model_path)  # the sampler the RL phase will use
    try:
        return evaluate(train, policy, specs)
    finally:
        policy.close()


def _warm_start(recipe: RecipeConfig, model_path: str, out: Path) -> tuple[Path, dict[str, Any]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agentrl.train.demos import oracle_demos
    from agentrl.train.sft import SFTConfig, run_sft

    train = recipe.train
    torch.manual_seed(train.trainer.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=getattr(torch, recipe.sft_dtype or train.model.dtype))
    seeds = range(recipe.demo_seed, recipe.demo_seed + recipe.sft_demos)
    demos = oracle_demos(train.rollout.env, tokenizer, seeds, env_kwargs=dict(train.rollout.env_kwargs))
    if not demos:
        raise ConfigError(f"the oracle solved none of the {recipe.sft_demos} demonstration episodes "
                          "(turn limit too small?): nothing to warm-start on")
    cfg = SFTConfig(model=model_path, env=train.rollout.env, env_kwargs=dict(train.rollout.env_kwargs),
                    episodes=recipe.sft_demos, demo_seed=recipe.demo_seed, steps=recipe.sft_steps,
                    rows_per_step=recipe.sft_rows_per_step, row_tokens=recipe.sft_row_tokens,
                    lr=recipe.sft_lr, seed=train.trainer.seed, dtype=recipe.sft_dtype or train.model.dtype,
                    lora_r=recipe.sft_lora_r,
                    out=str(out), log_every=max(1, recipe.sft_steps // 4))
    result = run_sft(cfg, model=model, tokenizer=tokenizer, trajectories=demos)
    assert result.checkpoint is not None  # run_sft saves by default
    info = {"demos": len(demos), "steps": recipe.sft_steps, "loss_first": result.losses[0],
            "loss_last": result.losses[-1], "time_s": result.time_s}
    return result.checkpoint, info


def run_recipe(recipe: RecipeConfig) -> dict[str, Any]:
    """Run the three phases; write and return the summary (held-out figures, times)."""
    from agentrl.policy._common import resolve_model_path
    from agentrl.train.loop import train as train_loop

    run_dir = Path(recipe.run_dir)
    if (run_dir / "summary.json").exists() or (run_dir / "rl" / "metrics.jsonl").exists():
        raise ConfigError(f"{run_dir} already holds a default run; remove it or pass run_dir=OTHER")
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model_path = str(resolve_model_path(recipe.model))
    specs = _held_out(recipe.train)
    summary: dict[str, Any] = {"env": recipe.train.rollout.env,
                               "env_kwargs": dict(recipe.train.rollout.env_kwargs),
                               "held_out_episodes": len(specs), "model": model_path}
    print(f"[1/3] held-out evaluation of the starting model ({len(specs)} episodes)", flush=True)
    summary["start"] = _evaluate_start(recipe, model_path, specs)
    print(f"      start: success {summary['start']['success']:.3f}", flush=True)
    rl_source = model_path
    if recipe.sft_steps:
        print(f"[2/3] SFT warm-start: {recipe.sft_steps} steps on {recipe.sft_demos} oracle demos", flush=True)
        ckpt, summary["sft"] = _warm_start(recipe, model_path, run_dir / "sft")
        summary["sft"]["checkpoint"] = rl_source = str(ckpt)
    summary["time_to_rl_s"] = time.perf_counter() - t0
    print(f"[3/3] RL: {recipe.train.trainer.steps} steps of {recipe.train.algo.advantage}", flush=True)
    config = dataclasses.replace(
        recipe.train, model=dataclasses.replace(recipe.train.model, path=rl_source))
    result = train_loop(config)
    summary["after_sft"] = result.eval_before
    summary["after_rl"] = result.eval_after
    summary["rl_steps"] = result.steps
    summary["checkpoint"] = str(result.checkpoint) if result.checkpoint else None
    summary["wall_s"] = time.perf_counter() - t0
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    _plot(run_dir, summary)
    return summary


def _plot(run_dir: Path, summary: dict[str, Any]) -> Path | None:
    """``learning.png``: held-out success per phase, SFT loss, RL training success."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agentrl.train.metrics import read_metrics

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    phases = [("start", "start"), ("after_sft", "after SFT"), ("after_rl", "after RL")]
    names = [label for key, label in phases if summary.get(key)]
    values = [summary[key]["success"] for key, _ in phases if summary.get(key)]
    bars = axes[0].bar(names, values, color=["#999999", "#6a9fd4", "#2f7d32"][: len(values)])
    for bar, v in zip(bars, values, strict=True):
        axes[0].text(bar.get_x() + bar.get_width() / 2, v + 0.01, f"{v:.2f}", ha="center")
    axes[0].set_ylim(0, 1.05)
    axes[0].set_title(f"held-out success ({summary['held_out_episodes']} episodes)")
    sft_log = run_dir / "sft" / "metrics.jsonl"
    if sft_log.is_file():
        recs = [json.loads(line) for line in sft_log.read_text().splitlines() if line.strip()]
        axes[1].plot([r["step"] for r in recs], [r["sft/loss"] for r in recs])
    axes[1].set_title("SFT loss (model tokens)")
    axes[1].set_xlabel("step")
    recs = read_metrics(run_dir / "rl") if (run_dir / "rl" / "metrics.jsonl").is_file() else []
    xs = [r["step"] for r in recs if isinstance(r.get("success/rate"), float)]
    ys = [r["success/rate"] for r in recs if isinstance(r.get("success/rate"), float)]
    axes[2].plot(xs, ys, label="training episodes")
    for key, label, colour in [("after_sft", "held-out, after SFT", "#6a9fd4"),
                               ("after_rl", "held-out, after RL", "#2f7d32")]:
        if summary.get(key):
            axes[2].axhline(summary[key]["success"], ls="--", color=colour, label=label)
    axes[2].set_ylim(0, 1.05)
    axes[2].set_title("RL: success rate")
    axes[2].set_xlabel("step")
    axes[2].legend(loc="lower right")
    fig.tight_layout()
    out = run_dir / "learning.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def run_default(overrides: Sequence[str] = (), config: str | Path | None = None) -> int:
    """``agentrl train`` with no ``--config`` (or a recipe file): the whole run, summary printed."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    recipe = load_recipe(config, overrides) if config is not None else default_recipe(overrides)
    summary = run_recipe(recipe)
    print(_report(summary, recipe))
    return 0


def _report(summary: dict[str, Any], recipe: RecipeConfig) -> str:
    def cell(key: str) -> str:
        d = summary.get(key)
        return "   -  " if not d else f"{d['success']:.3f}"

    lines = [
        f"run: {summary['env']} {summary['env_kwargs']}, held-out {summary['held_out_episodes']} episodes",
        f"  held-out success   start {cell('start')}   after SFT {cell('after_sft')}   after RL {cell('after_rl')}",
        f"  wall time {summary['wall_s'] / 60:.1f} min; run folder {recipe.run_dir} "
        f"(summary.json, learning.png, rl/plots via `agentrl plot {recipe.run_dir}/rl`)",
    ]
    return "\n".join(lines)
