"""``agentrl bench train-async``: synchronous vs one-step-off training, same env and budget.

Both runs train the same model from the same weights with the same config (seed, tasks,
group size, steps) on one shared in-process vLLM engine; only ``trainer.mode`` differs
(``sync`` vs ``async`` with ``rollout.max_staleness=1``). The env is
``agentrl/GuessNumber-v0`` behind :class:`agentrl.bench.rollout.ToolLatency`, which
sleeps ``--tool-latency-ms`` (default 20) in every step, standing in for a tool call.

Reported per run: wall time per step, generated (model) tokens per second of wall time,
the time the learner spent waiting for a batch, the mean reward of the last steps (the
learning curve must stay close), and for the async run the staleness distribution. The
table goes to stdout, everything to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym

__all__ = ["ENV_ID", "run_mode", "add_arguments", "main"]

ENV_ID = "agentrl-bench/GuessNumberLatency-v0"


def _latency_env(tool_latency_ms: float = 20.0, **kwargs: Any) -> gym.Env:
    from agentrl.bench.rollout import ToolLatency
    from agentrl.registry import make

    return ToolLatency(make("agentrl/GuessNumber-v0", **kwargs), tool_latency_ms / 1000.0)


def _register() -> None:
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point=_latency_env)


def run_mode(args: argparse.Namespace, mode: str, policy: Any, run_dir: Path) -> dict[str, Any]:
    """One training run (``sync`` or ``async``) on ``policy``; its figures."""
    from agentrl.train.config import load_config
    from agentrl.train.loop import train
    from agentrl.train.metrics import read_metrics

    _register()
    overrides = [
        f"model.path={args.model}", f"rollout.env={ENV_ID}",
        f"rollout.env_kwargs={{tool_latency_ms: {args.tool_latency_ms}, high: 16, max_turns: {args.turns}}}",
        f"rollout.max_turns={args.turns}", f"rollout.tasks_per_step={args.tasks}",
        f"rollout.group_size={args.group}", f"rollout.max_new_tokens={args.tokens}", "rollout.max_context=1024",
        f"trainer.steps={args.steps}", f"trainer.lr={args.lr}", f"trainer.micro_batch_size={args.tasks * args.group}",
        f"trainer.seed={args.seed}", f"trainer.mode={mode}", "rollout.max_staleness=1",
        "checkpoint.every=0", "logging.tensorboard=false", "logging.progress=false", f"logging.run_dir={run_dir}",
    ]
    config = load_config(overrides=overrides)
    t0 = time.perf_counter()
    train(config, policy=policy)
    wall = time.perf_counter() - t0
    recs = read_metrics(run_dir)
    tokens = sum(r["length/model_tokens_mean"] * (r["episodes/total"] - r["episodes/invalid"]) for r in recs)
    tail = recs[-max(1, len(recs) // 3):]
    out: dict[str, Any] = {
        "mode": mode, "steps": len(recs), "wall_s": wall, "wall_per_step_s": wall / len(recs),
        "gen_tokens": tokens, "gen_tokens_per_wall_s": tokens / wall,
        "wait_for_batch_s_mean": statistics.fmean(r["time/collect_s"] for r in recs),
        "update_s_mean": statistics.fmean(r.get("time/update_s", 0.0) for r in recs),
        "sync_s_mean": statistics.fmean(r.get("time/sync_s", 0.0) for r in recs),
        "reward_per_step": [r["reward/mean"] for r in recs],
        "reward_last_third": statistics.fmean(r["reward/mean"] for r in tail),
    }
    if mode == "async":
        out["staleness_frac"] = {
            str(s): statistics.fmean(r.get(f"staleness/frac_{s}", 0.0) for r in recs) for s in (0, 1)}
        out["staleness_max"] = max(r["staleness/max"] for r in recs)
        out["admit_len_gap_max"] = max(abs(r["admit/len_gap"]) for r in recs)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="tiny", help="model folder or 'tiny' (default tiny)")
    parser.add_argument("--steps", type=int, default=8, help="training steps per run (default 8)")
    parser.add_argument("--tasks", type=int, default=8, help="tasks per step (default 8)")
    parser.add_argument("--group", type=int, default=4, help="episodes per task (default 4)")
    parser.add_argument("--turns", type=int, default=4, help="turns per episode (default 4)")
    parser.add_argument("--tokens", type=int, default=16, help="max new tokens per turn (default 16)")
    parser.add_argument("--tool-latency-ms", type=float, default=20.0, help="sleep per env step (default 20)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    parser.add_argument("--warmup-steps", type=int, default=2,
                        help="unmeasured sync steps on the fresh engine first (default 2)")
    parser.add_argument("--first", choices=["sync", "async"], default="sync",
                        help="which run goes first on the fresh engine (default sync; swap to check order bias)")
    parser.add_argument("--out", default="runs/bench-train-async.json", help="JSON output")


def main(args: argparse.Namespace) -> int:
    from agentrl.policy.vllm_engine import VLLMPolicy
    from agentrl.train.loop import _quiet_vllm

    _quiet_vllm(False)
    policy = VLLMPolicy(args.model, kv_cache_gib=1, seed=args.seed,
                        engine_kwargs={"use_tqdm_on_load": False})
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.warmup_steps:  # the fresh engine's first steps are slow: not measured
                warm = argparse.Namespace(**{**vars(args), "steps": args.warmup_steps})
                run_mode(warm, "sync", policy, Path(tmp) / "warmup")
            order = ("sync", "async") if args.first == "sync" else ("async", "sync")
            for mode in order:
                rows.append(run_mode(args, mode, policy, Path(tmp) / mode))
    finally:
        policy.close()
    rows.sort(key=lambda r: r["mode"] != "sync")
    sync, asy = rows
    print(f"{args.steps} steps x {args.tasks} tasks x {args.group} episodes, {args.turns} turns x "
          f"<= {args.tokens} tokens, tool latency {args.tool_latency_ms:g} ms, model {args.model}")
    print(f"{'mode':<8} {'s/step':>8} {'gen tok/s':>10} {'wait s':>8} {'update s':>9} {'sync s':>7} {'reward(last 1/3)':>17}")
    for r in rows:
        print(f"{r['mode']:<8} {r['wall_per_step_s']:>8.2f} {r['gen_tokens_per_wall_s']:>10.1f} "
              f"{r['wait_for_batch_s_mean']:>8.2f} {r['update_s_mean']:>9.2f} {r['sync_s_mean']:>7.2f} "
              f"{r['reward_last_third']:>17.3f}")
    speedup = sync["wall_per_step_s"] / asy["wall_per_step_s"]
    print(f"one-step-off speed-up (wall per step): {speedup:.2f}x (target >= 1.5x); staleness "
          f"fractions {asy['staleness_frac']}, max {asy['staleness_max']}")
    result = {"args": vars(args) | {"func": None}, "sync": sync, "async": asy, "speedup": speedup}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    add_arguments(p)
    raise SystemExit(main(p.parse_args()))
