"""The trainer's configuration: one frozen dataclass tree, loaded from YAML + dotted overrides.

``load_config("run.yaml", ["trainer.lr=1e-5", "algo.advantage=gigpo"])`` merges, in order,
the defaults of :class:`TrainConfig`, the YAML file and the overrides with OmegaConf's
structured configs (unknown keys and wrong types are refused with the key's full name),
then builds the frozen tree, whose ``__post_init__`` checks refuse impossible
combinations before any work starts, each with a message saying what to change.
:func:`save_config` writes the resolved tree (``RUN_DIR/config.yaml``); loading that file
again gives the same config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentrl.errors import ConfigError

__all__ = [
    "ModelConfig",
    "RolloutSection",
    "AlgoConfig",
    "OptimConfig",
    "CheckpointConfig",
    "LoggingConfig",
    "EvalConfig",
    "LoraSection",
    "OfflineSection",
    "TrainConfig",
    "load_config",
    "save_config",
    "config_to_yaml",
]

_BACKENDS = ("vllm", "hf", "openai")
_RATIOS = ("token", "sequence")
_IS_MODES = ("none", "token", "sequence")
_CRITICS = ("none", "head", "model")
_DTYPES = ("float32", "bfloat16")


def _positive(section: str, obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{section}.{name} must be > 0, got {value!r}")


def _unit(section: str, name: str, value: float, *, closed_low: bool = True) -> None:
    low_ok = value >= 0 if closed_low else value > 0
    if not (low_ok and value <= 1):
        raise ConfigError(f"{section}.{name} must be in {'[' if closed_low else '('}0, 1], got {value}")


@dataclass(frozen=True)
class ModelConfig:
    """The model being trained."""

    path: str = "tiny"
    """Checkpoint folder, hub id, or ``tiny`` (the built-in tiny chat model)."""
    dtype: str = "float32"
    """Learner weight dtype: ``float32`` (exact logprobs; default) or ``bfloat16``."""

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("model.path is empty; give a checkpoint folder, a hub id or 'tiny'")
        if self.dtype not in _DTYPES:
            raise ConfigError(f"model.dtype must be one of {', '.join(_DTYPES)}, got {self.dtype!r}")


@dataclass(frozen=True)
class RolloutSection:
    """How episodes are collected each step (the policy that samples, the env, the limits)."""

    env: str = "agentrl/GuessNumber-v0"
    """Registered env id to train on."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for ``agentrl.registry.make(env, **env_kwargs)``."""
    backend: str = "vllm"
    """Sampling policy: ``vllm`` (in-process engine), ``hf`` (transformers generate) or
    ``openai`` (a vLLM server on this machine started with ``VLLM_SERVER_DEV_MODE=1``, at
    ``server_url``; weights go through /dev/shm, see docs/policy.md)."""
    server_url: str | None = None
    """Server root for ``backend: openai``, e.g. ``http://127.0.0.1:8000``."""
    workers: int = 0
    """Ray rollout workers (extra ``agentrl[ray]``): 0 collects in this process; N starts N
    Ray actors, each with its own ``backend`` sampler (vllm or hf) and envs, all given the
    new weights after every step. ``ray_address`` joins a cluster."""
    ray_address: str | None = None
    """Ray cluster address for ``workers > 0`` (None: a local Ray on this machine)."""
    tasks_per_step: int = 8
    """Episode specs (tasks) consumed per training step."""
    group_size: int = 8
    """Episodes per task (they share a group id: the GRPO group)."""
    max_turns: int = 8
    """Most assistant turns per episode."""
    max_new_tokens: int = 64
    """Most tokens generated per turn."""
    max_context: int = 1024
    """Most tokens per episode (prompt, turns and env messages)."""
    temperature: float = 1.0
    """Sampling temperature (the learner's logprobs are taken at temperature 1 either way)."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    truncate_on_length: bool = False
    """True: a turn that hits max_new_tokens ends the episode with no further reward. Off by
    default for training: an env whose bad answers earn negative rewards would otherwise
    teach the model to ramble to the limit (0 beats a penalty); the env judges the cut text."""
    concurrency: int = 64
    """Most episodes in flight at once."""
    kv_cache_gib: float = 1.0
    """vLLM KV cache size in GiB (backend ``vllm``)."""
    verify_sync: bool = True
    """After each weight push, compare the engine's logprobs on a probe text with the learner's."""
    sync_atol: float = 1e-3
    """Largest logprob difference the sync check accepts."""
    max_staleness: int = 1
    """``trainer.mode=async``: batches generated ahead of the learner, and the most updates an
    admitted episode's oldest weights may lag behind (1 = one-step-off)."""
    stale_rule: str = "drop"
    """``trainer.mode=async``: episodes staler than max_staleness are ``drop``ped or ``keep``t
    (trained on with the sampler-IS correction of ``algo.is_correction``)."""

    def __post_init__(self) -> None:
        s = "rollout"
        if not self.env:
            raise ConfigError("rollout.env is empty; give a registered env id (see `agentrl envs`)")
        if self.backend not in _BACKENDS:
            raise ConfigError(
                f"rollout.backend must be one of {', '.join(_BACKENDS)} (backends that take weight "
                f"updates), got {self.backend!r}"
            )
        if self.backend == "openai" and not self.server_url:
            raise ConfigError(
                "rollout.backend=openai needs rollout.server_url (a vLLM server on this machine "
                "started with VLLM_SERVER_DEV_MODE=1, e.g. http://127.0.0.1:8000)"
            )
        if self.workers < 0:
            raise ConfigError(f"rollout.workers must be >= 0 (0: no Ray), got {self.workers}")
        if self.workers and self.backend == "openai":
            raise ConfigError(
                "rollout.workers > 0 runs one sampler per Ray worker: use backend vllm or hf "
                "(a shared server needs no workers: set rollout.workers=0)"
            )
        _positive(s, self, "tasks_per_step", "group_size", "max_turns", "max_new_tokens",
                  "max_context", "concurrency", "kv_cache_gib", "sync_atol", "top_p")
        if self.max_new_tokens >= self.max_context:
            raise ConfigError(
                f"rollout.max_new_tokens ({self.max_new_tokens}) must be below rollout.max_context "
                f"({self.max_context}): the prompt needs room too"
            )
        if self.temperature <= 0:
            raise ConfigError(
                f"rollout.temperature must be > 0 for training (got {self.temperature}); greedy "
                "samples give every member of a group the same answer"
            )
        _unit(s, "top_p", self.top_p, closed_low=False)
        if isinstance(self.max_staleness, bool) or self.max_staleness < 1:
            raise ConfigError(f"rollout.max_staleness must be >= 1 (0 = trainer.mode=sync), got {self.max_staleness}")
        if self.stale_rule not in ("drop", "keep"):
            raise ConfigError(f"rollout.stale_rule must be drop or keep, got {self.stale_rule!r}")


@dataclass(frozen=True)
class AlgoConfig:
    """The learning algorithm: advantages, policy loss, regularisers, critic."""

    advantage: str = "grpo"
    """Estimator name in ``agentrl.credit.registry`` (grpo, dr_grpo, rloo, reinforce_pp,
    reinforce_pp_baseline, remax, gae, turn_return, bilevel_gae, mt_grpo, gigpo)."""
    advantage_params: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of the estimator (e.g. ``gamma``, ``lam``, ``step_coef``)."""
    ratio: str = "token"
    """Importance ratio of the clipped surrogate: ``token`` (PPO) or ``sequence`` (GSPO)."""
    clip_low: float = 0.2
    """Lower clip: ratios below 1 - clip_low get no gradient for negative advantages."""
    clip_high: float = 0.28
    """Upper clip (DAPO clip-higher): ratios above 1 + clip_high get no gradient for positive advantages."""
    dual_clip: float | None = None
    """Dual-clip constant c > 1 capping the loss at -c * A for negative advantages (None: off)."""
    aggregation: str = "token-mean"
    """Loss aggregation: token-mean, seq-mean-token-mean, seq-mean-token-sum or constant."""
    kl_coef: float = 0.0
    """Weight of the KL to the frozen initial model; 0 (default) keeps no reference model."""
    kl_estimator: str = "k3"
    """KL estimator: k1, k2 or k3."""
    kl_in_reward: bool = False
    """Subtract kl_coef * KL (summed over each turn's tokens) from the turn rewards instead
    of adding a loss term."""
    entropy_coef: float = 0.0
    """Entropy bonus weight (the loss subtracts coef * mean entropy of model tokens)."""
    is_correction: str = "token"
    """Sampler/learner mismatch correction: none, token (truncated IS per token) or sequence."""
    is_cap: float | None = 2.0
    """Truncation of the IS weight (None: no truncation)."""
    is_band: list[float] | None = None
    """``[low, high]``: tokens (sequences) whose ratio falls outside are masked out (None: off)."""
    critic: str = "none"
    """``none``; ``head`` (a value head on the policy's last hidden state); ``model`` (a
    separate model with a value head, ``critic_path``)."""
    critic_path: str | None = None
    """Checkpoint of the separate critic model (``critic: model``); None: a copy of the policy's."""
    value_coef: float = 0.5
    """Weight of the value loss."""
    value_clip: float | None = 0.2
    """Clip of the value loss around the rollout-time values (None: plain squared error)."""

    def __post_init__(self) -> None:
        from agentrl.losses import AGGREGATIONS, KL_ESTIMATORS

        if not self.advantage:
            raise ConfigError("algo.advantage is empty; name an estimator (e.g. grpo)")
        if self.ratio not in _RATIOS:
            raise ConfigError(f"algo.ratio must be token or sequence (GSPO), got {self.ratio!r}")
        if not 0 <= self.clip_low < 1:
            raise ConfigError(f"algo.clip_low must be in [0, 1), got {self.clip_low}")
        if self.clip_high < 0:
            raise ConfigError(f"algo.clip_high must be >= 0, got {self.clip_high}")
        if self.dual_clip is not None and self.dual_clip <= 1:
            raise ConfigError(f"algo.dual_clip must be > 1 (typically 3) or null, got {self.dual_clip}")
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(
                f"algo.aggregation must be one of {', '.join(AGGREGATIONS)}, got {self.aggregation!r}"
            )
        if self.kl_coef < 0 or self.entropy_coef < 0 or self.value_coef < 0:
            raise ConfigError("algo.kl_coef, algo.entropy_coef and algo.value_coef must be >= 0")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ConfigError(
                f"algo.kl_estimator must be one of {', '.join(KL_ESTIMATORS)}, got {self.kl_estimator!r}"
            )
        if self.kl_in_reward and self.kl_coef == 0:
            raise ConfigError("algo.kl_in_reward is true but algo.kl_coef is 0: set kl_coef > 0")
        if self.is_correction not in _IS_MODES:
            raise ConfigError(
                f"algo.is_correction must be one of {', '.join(_IS_MODES)}, got {self.is_correction!r}"
            )
        if self.is_cap is not None and self.is_cap <= 0:
            raise ConfigError(f"algo.is_cap must be > 0 or null, got {self.is_cap}")
        if self.is_band is not None and (
            len(self.is_band) != 2 or not 0 <= self.is_band[0] < self.is_band[1]
        ):
            raise ConfigError(f"algo.is_band must be [low, high] with 0 <= low < high, got {self.is_band}")
        if self.critic not in _CRITICS:
            raise ConfigError(f"algo.critic must be one of {', '.join(_CRITICS)}, got {self.critic!r}")
        if self.critic_path is not None and self.critic != "model":
            raise ConfigError("algo.critic_path is set but algo.critic is not 'model': set critic=model")
        if self.value_clip is not None and self.value_clip <= 0:
            raise ConfigError(f"algo.value_clip must be > 0 or null, got {self.value_clip}")


@dataclass(frozen=True)
class OptimConfig:
    """The update: epochs, minibatches, accumulation, AdamW and its schedule."""

    steps: int = 20
    """Training steps (one rollout batch each)."""
    epochs: int = 1
    """Passes over each rollout batch."""
    minibatches: int = 1
    """Optimizer steps per epoch (the batch is split into this many minibatches)."""
    micro_batch_size: int = 16
    """Episodes per forward/backward pass (gradient accumulation inside a minibatch)."""
    lr: float = 1e-5
    """Peak learning rate of the policy."""
    critic_lr: float | None = None
    """Learning rate of the critic (None: lr)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.999
    """AdamW beta2."""
    eps: float = 1e-8
    """AdamW epsilon."""
    warmup_steps: int = 0
    """Optimizer steps of linear warm-up from 0 to lr."""
    min_lr_ratio: float = 0.1
    """Cosine decay ends at lr * min_lr_ratio after the last optimizer step."""
    max_grad_norm: float | None = 1.0
    """Gradient clipping by global norm (None: off; the norm is still reported)."""
    seed: int = 0
    """Seed of the run: task order, sampling seeds, torch/numpy/python RNGs."""
    device: str = "cpu"
    """Torch device of the learner."""
    mode: str = "sync"
    """``sync``: collect, then update, each step; ``async``: the next rollout.max_staleness
    batches generate while the learner updates (agentrl.train.async_loop)."""

    def __post_init__(self) -> None:
        _positive("trainer", self, "steps", "epochs", "minibatches", "micro_batch_size", "lr", "eps")
        if self.mode not in ("sync", "async"):
            raise ConfigError(f"trainer.mode must be sync or async, got {self.mode!r}")
        if self.critic_lr is not None and self.critic_lr <= 0:
            raise ConfigError(f"trainer.critic_lr must be > 0 or null, got {self.critic_lr}")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise ConfigError("trainer.warmup_steps and trainer.weight_decay must be >= 0")
        _unit("trainer", "min_lr_ratio", self.min_lr_ratio)
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"trainer.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ConfigError(f"trainer.max_grad_norm must be > 0 or null, got {self.max_grad_norm}")


@dataclass(frozen=True)
class CheckpointConfig:
    """When checkpoints are written and how many are kept."""

    every: int = 10
    """Write a checkpoint every N steps (and after the last step); 0: only after the last."""
    keep: int = 2
    """Keep the last K checkpoints (older ones are deleted after a new one is complete)."""

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ConfigError(f"checkpoint.every must be >= 0, got {self.every}")
        if self.keep < 1:
            raise ConfigError(f"checkpoint.keep must be >= 1 (resume needs one), got {self.keep}")


@dataclass(frozen=True)
class LoggingConfig:
    """Where the run writes and what it shows."""

    run_dir: str = "runs/train"
    """Run folder: config.yaml, metrics.jsonl, specs.jsonl, tensorboard/, checkpoints/."""
    tensorboard: bool = True
    """Also write TensorBoard event files (``RUN_DIR/tensorboard``)."""
    progress: bool = True
    """Show a progress bar with live reward and success."""
    verbose: bool = False
    """Show vLLM's own log lines (hidden by default)."""


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation before training and after it (greedy-free: sampled at temperature)."""

    episodes: int = 0
    """Held-out episodes (specs never used for training); 0: no evaluation."""
    seed: int = 1_000_000
    """First seed of the held-out specs (training uses seeds below it, generated envs)."""
    temperature: float = 0.0
    """Sampling temperature of the evaluation (0: greedy)."""

    def __post_init__(self) -> None:
        if self.episodes < 0 or self.temperature < 0:
            raise ConfigError("eval.episodes and eval.temperature must be >= 0")


@dataclass(frozen=True)
class LoraSection:
    """LoRA adapters through ``peft`` (extra ``agentrl[lora]``): only the adapters are trained."""

    r: int = 0
    """Adapter rank; 0 (default): full fine-tuning, no adapters."""
    alpha: float = 16.0
    """Scaling numerator: the update is ``alpha / r * B @ A``."""
    dropout: float = 0.0
    """Dropout on the adapter input (the learner runs in eval mode, so it only matters if > 0
    and the model is switched to train mode; keep 0 for exact logprobs)."""
    targets: list[str] = field(default_factory=lambda: ["all-linear"])
    """Module names to adapt (e.g. ``[q_proj, v_proj]``), or ``[all-linear]`` (every linear
    layer but the output layer)."""

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or self.r < 0:
            raise ConfigError(f"lora.r must be an int >= 0 (0 = off), got {self.r!r}")
        if self.r and self.alpha <= 0:
            raise ConfigError(f"lora.alpha must be > 0, got {self.alpha}")
        _unit("lora", "dropout", self.dropout)
        if self.r and not self.targets:
            raise ConfigError("lora.targets is empty; name modules (e.g. [q_proj, v_proj]) or [all-linear]")


_OFFLINE_LOSSES = ("dpo", "ipo", "kto")
_PAIRINGS = ("best_worst", "threshold")


@dataclass(frozen=True)
class OfflineSection:
    """Offline preference training on recorded trajectories (``agentrl train --algo dpo --data F``)."""

    data: str | None = None
    """Trajectory JSONL file (``agentrl rollout --out``); set: an offline run (no sampling)."""
    loss: str = "dpo"
    """Preference loss: ``dpo``, ``ipo`` or ``kto`` (``agentrl.losses.preference``)."""
    pairs: str = "best_worst"
    """How trajectories become preferences: ``best_worst`` (per group, the highest-reward
    episode over the lowest; all-equal groups are skipped) or ``threshold`` (per group,
    every episode with reward >= threshold over every one below it)."""
    threshold: float = 0.5
    """Reward threshold of ``pairs=threshold`` (and of KTO's desirable label there)."""
    beta: float = 0.1
    """Strength of the implicit KL to the reference (DPO/IPO/KTO beta)."""
    label_smoothing: float = 0.0
    """cDPO label smoothing (DPO only), in [0, 0.5)."""
    length_average: bool | None = None
    """Use the mean instead of the sum of token logprobs per sequence; None: on for IPO only."""
    pairs_per_step: int = 8
    """Preference pairs (KTO: 2x examples) per optimizer step; the data is cycled, reshuffled
    each pass (seeded by trainer.seed)."""

    def __post_init__(self) -> None:
        if self.loss not in _OFFLINE_LOSSES:
            raise ConfigError(f"offline.loss must be one of {', '.join(_OFFLINE_LOSSES)}, got {self.loss!r}")
        if self.pairs not in _PAIRINGS:
            raise ConfigError(f"offline.pairs must be one of {', '.join(_PAIRINGS)}, got {self.pairs!r}")
        _positive("offline", self, "beta", "pairs_per_step")
        if not 0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"offline.label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.label_smoothing and self.loss != "dpo":
            raise ConfigError("offline.label_smoothing applies to loss=dpo only")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; ``agentrl train --config FILE key=value ...``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The model being trained."""
    rollout: RolloutSection = field(default_factory=RolloutSection)
    """Collection of episodes."""
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    """Advantages, losses, critic."""
    trainer: OptimConfig = field(default_factory=OptimConfig)
    """Optimisation and schedule."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoint cadence."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Run folder and display."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Held-out evaluation before and after."""
    lora: LoraSection = field(default_factory=LoraSection)
    """LoRA adapters (``lora.r > 0``) instead of full fine-tuning."""
    offline: OfflineSection = field(default_factory=OfflineSection)
    """Offline preference training (``offline.data`` set) instead of online RL."""

    def __post_init__(self) -> None:
        self._check_combinations()

    @property
    def episodes_per_step(self) -> int:
        return self.rollout.tasks_per_step * self.rollout.group_size

    def _check_combinations(self) -> None:
        """Refuse combinations that cannot work, saying what to change."""
        from agentrl.credit.registry import ESTIMATORS

        algo, roll, opt = self.algo, self.rollout, self.trainer
        spec = ESTIMATORS.get(algo.advantage)
        if spec is None:
            raise ConfigError(
                f"algo.advantage={algo.advantage!r} is not a registered estimator; choose one of "
                f"{', '.join(sorted(ESTIMATORS))}"
            )
        if spec.needs_critic and algo.critic == "none":
            raise ConfigError(
                f"algo.advantage={algo.advantage} needs a critic but algo.critic=none: set "
                "algo.critic=head (value head on the policy) or algo.critic=model, or pick a "
                "critic-free estimator (grpo, rloo, turn_return, ...)"
            )
        if not spec.needs_critic and algo.critic != "none":
            raise ConfigError(
                f"algo.critic={algo.critic} but algo.advantage={algo.advantage} does not use "
                "values: set algo.critic=none or use gae / bilevel_gae"
            )
        if spec.needs_groups and roll.group_size < 2:
            raise ConfigError(
                f"algo.advantage={algo.advantage} compares episodes of one task, but "
                f"rollout.group_size={roll.group_size}: every advantage would be 0. Set "
                "rollout.group_size >= 2 (e.g. 8) or use a group-free estimator (reinforce_pp, "
                "turn_return, gae)"
            )
        if spec.needs_obs_keys and roll.max_turns < 2:
            raise ConfigError(
                f"algo.advantage={algo.advantage} groups turns by the observation they acted "
                "on, which needs multi-turn episodes: set rollout.max_turns >= 2 or use grpo"
            )
        if self.lora.r and algo.critic == "model":
            raise ConfigError(
                "lora.r > 0 with algo.critic=model is not supported: use algo.critic=head "
                "(a value head on the adapted policy) or lora.r=0"
            )
        n_episodes = self.episodes_per_step
        if opt.minibatches > n_episodes:
            raise ConfigError(
                f"trainer.minibatches={opt.minibatches} exceeds the episodes per step "
                f"({n_episodes} = rollout.tasks_per_step x rollout.group_size): lower it"
            )
        if n_episodes % opt.minibatches:
            raise ConfigError(
                f"trainer.minibatches={opt.minibatches} does not divide the {n_episodes} episodes "
                "per step: pick a divisor so every minibatch has the same size"
            )


# ---------------------------------------------------------------------- loading / saving
def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    base: TrainConfig | None = None,
) -> TrainConfig:
    """Defaults (or ``base``) <- YAML file <- ``key=value`` overrides -> a checked :class:`TrainConfig`.

    Raises:
        ConfigError: unknown key, wrong type, unreadable file, or a refused combination.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        merged = OmegaConf.structured(base if base is not None else TrainConfig)
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise ConfigError(f"config file {p} does not exist")
            merged = OmegaConf.merge(merged, OmegaConf.load(p))
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"overrides must look like key=value (e.g. trainer.lr=1e-5), got {bad}")
        if overrides:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"bad training config: {_first_line(exc)}") from exc
    except (OSError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"cannot read the training config: {exc}") from exc
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"the config did not build a TrainConfig (got {type(config).__name__})")
    return config


def _first_line(exc: Exception) -> str:
    lines = str(exc).splitlines()
    key = next((ln.strip() for ln in lines if ln.strip().startswith("full_key:")), "")
    return lines[0] + (f" ({key})" if key else "") if lines else type(exc).__name__


def config_to_yaml(config: TrainConfig) -> str:
    """The resolved config as YAML (loadable with :func:`load_config`)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.structured(config))


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(config_to_yaml(config), encoding="utf-8")
    tmp.replace(p)
