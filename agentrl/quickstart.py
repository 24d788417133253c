"""``agentrl quickstart``: the built-in default run, on a laptop CPU in minutes.

1. Oracle evaluation of every built-in environment (proves each env, its tools and its
   grader end to end; sandboxed envs run in bubblewrap).
2. A rollout of the tiny locally built chat model on the CPU build of vLLM over the
   Calculator and GuessNumber envs: token-exact trajectories and a summary per env.
   The tiny model is untrained, so its success rate is near zero: the point is the
   pipeline (training comes with the trainer).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from agentrl.checker import run_oracle_episode
from agentrl.errors import AgentRLError
from agentrl.registry import list_envs, make

__all__ = ["run_quickstart", "oracle_table"]

ROLLOUT_ENVS = ("agentrl/Calculator-v0", "agentrl/GuessNumber-v0")


def oracle_table(episodes: int, seed: int = 0) -> tuple[list[dict[str, object]], bool]:
    """Run the oracle on every agentrl env; return rows and whether all episodes succeeded."""
    rows: list[dict[str, object]] = []
    ok = True
    for info in list_envs():
        t0 = time.perf_counter()
        try:
            env = make(info.id)
            results = [run_oracle_episode(env, seed + i) for i in range(episodes)]
            env.close()
        except (AgentRLError, NotImplementedError) as exc:  # e.g. sandbox missing
            rows.append({"env": info.id, "error": f"{type(exc).__name__}: {exc}"})
            ok = False
            continue
        solved = sum(1 for _, s, _ in results if s)
        ok &= solved == episodes
        rows.append({
            "env": info.id,
            "episodes": episodes,
            "success_rate": solved / episodes,
            "mean_reward": sum(r for r, _, _ in results) / episodes,
            "mean_turns": sum(t for _, _, t in results) / episodes,
            "seconds": round(time.perf_counter() - t0, 2),
        })
    return rows, ok


def _print_oracle(rows: list[dict[str, object]]) -> None:
    width = max(len(str(r["env"])) for r in rows)
    print(f"{'env':<{width}}  {'success':>7}  {'reward':>6}  {'turns':>5}  {'time':>6}")
    for r in rows:
        if "error" in r:
            print(f"{r['env']:<{width}}  ERROR {r['error']}")
            continue
        print(f"{r['env']:<{width}}  {r['success_rate']:>7.0%}  {r['mean_reward']:>6.2f}  "
              f"{r['mean_turns']:>5.1f}  {r['seconds']:>5.1f}s")


def run_quickstart(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"== 1/2 oracle evaluation of every built-in environment ({args.episodes} episodes each)")
    rows, oracle_ok = oracle_table(args.episodes)
    _print_oracle(rows)
    (out / "oracle.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    if args.policy == "none":
        print("(rollout skipped: --policy none)")
        return 0 if oracle_ok else 1

    from agentrl.policy import load_policy
    from agentrl.rollout import RolloutConfig, collect_sync
    from agentrl.rollout.cli_rollout import write_run
    from agentrl.rollout.summary import format_summary, summarize

    print(f"\n== 2/2 rollouts of {args.policy} ({args.episodes} episodes per env, groups of 4)")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # engine start-up logs are long
    policy = load_policy(args.policy)
    # An untrained model rarely ends its turn: close cut-off turns and go on, so that the
    # trajectories show several turns with tool results between them.
    config = RolloutConfig(max_turns=4, max_new_tokens=48, max_context=2048, temperature=1.0,
                           group_size=4, truncate_on_length=False)
    try:
        for env_id in ROLLOUT_ENVS:
            t0 = time.perf_counter()
            seeds = range(max(1, args.episodes // config.group_size))
            trajectories = collect_sync(env_id, policy, seeds, config, progress=True)
            summary = summarize(trajectories, time.perf_counter() - t0)
            path = out / f"{env_id.split('/')[-1]}.jsonl"
            written = write_run(trajectories, summary, path)
            print(f"-- {env_id}\n{format_summary(summary)}\nwrote {path} and {written}")
    finally:
        policy.close()
    print(f"\nDone. Inspect an episode with: agentrl show {out / 'Calculator-v0.jsonl'}")
    return 0 if oracle_ok else 1
