"""``agentrl rollout``: run a policy on an environment, write trajectories and a summary.

Example::

    agentrl rollout --env agentrl/Calculator-v0 --policy vllm:tiny --episodes 32 \\
        --out runs/calc.jsonl

writes ``runs/calc.jsonl`` (one trajectory per line) and ``runs/calc.jsonl.summary.json``
(success rate, mean reward, turns, tokens, wall time, tokens/s), and prints the summary.
``--all-tasks`` runs each task of a finite env (e.g. the 164 of ``agentrl/HumanEval-v0``)
exactly once, ``--group-size`` times.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from agentrl.errors import ConfigError
from agentrl.rollout.collector import collect_sync
from agentrl.rollout.config import RolloutConfig
from agentrl.rollout.spec import specs_for
from agentrl.rollout.summary import format_summary, summarize
from agentrl.trajectory import Trajectory, save_jsonl

__all__ = ["add_arguments", "main", "summary_path", "write_run"]


def summary_path(out: str | Path) -> Path:
    """Where the summary of the trajectories in ``out`` is written: ``OUT.summary.json``."""
    return Path(f"{out}.summary.json")


def write_run(trajectories: list[Trajectory], summary: dict[str, Any], out: str | Path) -> Path:
    """Write ``trajectories`` to ``out`` (JSONL) and ``summary`` beside it; return the summary path."""
    save_jsonl(trajectories, out)
    path = summary_path(out)
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = RolloutConfig()
    parser.add_argument("--env", required=True, help="registered env id, e.g. agentrl/Calculator-v0")
    parser.add_argument(
        "--policy", required=True,
        help="vllm:PATH (in-process vLLM), openai:URL (OpenAI-compatible server), hf:PATH "
             "(transformers); PATH may be 'tiny' for the built-in tiny model",
    )
    parser.add_argument("--episodes", type=int, default=8,
                        help="total episodes (a multiple of --group-size; default 8)")
    parser.add_argument("--all-tasks", action="store_true",
                        help="run every task of an env with a finite task list once (times "
                             "--group-size) instead of --episodes seeded episodes")
    parser.add_argument("--out", required=True, help="trajectories JSONL file to write")
    parser.add_argument("--group-size", type=int, default=d.group_size,
                        help="episodes per task seed, sharing a group id (default 1)")
    parser.add_argument("--max-turns", type=int, default=d.max_turns,
                        help=f"assistant turns per episode (default {d.max_turns})")
    parser.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens,
                        help=f"tokens per turn (default {d.max_new_tokens})")
    parser.add_argument("--max-context", type=int, default=d.max_context,
                        help=f"tokens per episode (default {d.max_context})")
    parser.add_argument("--temperature", type=float, default=d.temperature,
                        help=f"sampling temperature (default {d.temperature})")
    parser.add_argument("--top-p", type=float, default=d.top_p, help="nucleus mass (default 1.0)")
    parser.add_argument("--seed", type=int, default=0,
                        help="first task seed; tasks use SEED, SEED+1, ... (default 0)")
    parser.add_argument("--sampling-seed", type=int, default=None,
                        help="seed sampling too (per request; default: unseeded)")
    parser.add_argument("--concurrency", type=int, default=d.concurrency,
                        help=f"episodes in flight (default {d.concurrency})")
    parser.add_argument("--env-kwargs", default="{}",
                        help='JSON object of env keyword arguments, e.g. \'{"difficulty": 2}\'')
    parser.add_argument("--policy-kwargs", default="{}",
                        help='JSON object of backend settings, e.g. \'{"kv_cache_gib": 1}\' for vllm')
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _json_object(text: str, flag: str) -> dict[str, Any]:
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{flag} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{flag} must be a JSON object")
    return value


def _config(args: argparse.Namespace) -> RolloutConfig:
    env_kwargs = _json_object(args.env_kwargs, "--env-kwargs")
    if not args.all_tasks and (
        args.episodes < 1 or args.group_size < 1 or args.episodes % args.group_size
    ):
        raise ConfigError(
            f"--episodes ({args.episodes}) must be a positive multiple of --group-size "
            f"({args.group_size})"
        )
    return RolloutConfig(
        max_turns=args.max_turns,
        max_new_tokens=args.max_new_tokens,
        max_context=args.max_context,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.sampling_seed,
        group_size=args.group_size,
        concurrency=args.concurrency,
        env_kwargs=env_kwargs,
    )


def main(args: argparse.Namespace) -> int:
    """Exit 0 when every episode ran (whatever it scored), 1 when all of them errored."""
    from agentrl.policy import load_policy
    from agentrl.registry import make

    config = _config(args)
    policy_kwargs = _json_object(args.policy_kwargs, "--policy-kwargs")
    env = make(args.env, **config.env_kwargs)  # unknown ids / bad kwargs fail before the model loads
    try:
        specs: Any = (
            specs_for(env, seed=args.seed) if args.all_tasks
            else range(args.seed, args.seed + args.episodes // config.group_size)
        )
    finally:
        env.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    policy = load_policy(args.policy, **policy_kwargs)
    try:
        t0 = time.perf_counter()
        trajectories = collect_sync(args.env, policy, specs, config, progress=not args.quiet)
        wall = time.perf_counter() - t0
    finally:
        policy.close()
    summary = {
        **summarize(trajectories, wall),
        "policy": args.policy,
        "out": str(out),
        "config": asdict(config),
    }
    write_run(trajectories, summary, out)
    print(format_summary(summary))
    print(f"wrote {len(trajectories)} trajectories to {out} and the summary to {summary_path(out)}")
    failed = sum(t.end_reason == "error" for t in trajectories)
    return 1 if failed == len(trajectories) else 0
