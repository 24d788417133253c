"""``agentrl eval``: benchmark a policy on envs or suites; ``agentrl eval compare A B``.

Examples::

    agentrl eval --policy vllm:tiny --envs bfcl-single --out runs/eval-tiny
    agentrl eval --oracle --envs bfcl --out runs/eval-oracle
    agentrl eval compare runs/eval-a runs/eval-b

writes ``OUT/report.json``, ``OUT/report.md`` and ``OUT/report.html``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
from pathlib import Path
from typing import Any

from agentrl.errors import ConfigError

__all__ = ["add_arguments", "main", "compare"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("words", nargs="*", metavar="compare RUN_A RUN_B",
                        help="'compare RUN_A RUN_B': per-env differences with paired bootstrap intervals")
    parser.add_argument("--policy", help="vllm:PATH, openai:URL, hf:PATH ('tiny' = the built-in tiny model)")
    parser.add_argument("--oracle", action="store_true", help="each env's oracle instead of a policy")
    parser.add_argument("--envs", help="comma-separated env ids and/or suites (bfcl, bfcl-single, bfcl-multi, code)")
    parser.add_argument("--samples", type=int, default=1, help="episodes per task, K (default 1)")
    parser.add_argument("--episodes", type=int, default=None,
                        help="episodes of a generated env; caps the tasks of a finite one")
    parser.add_argument("--out", default="runs/eval", help="output folder (default runs/eval)")
    parser.add_argument("--max-turns", type=int, default=24, help="assistant turns per episode (default 24)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="tokens per turn (default 256)")
    parser.add_argument("--max-context", type=int, default=8192, help="tokens per episode (default 8192)")
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0)")
    parser.add_argument("--concurrency", type=int, default=32, help="episodes in flight (default 32)")
    parser.add_argument("--env-kwargs", default="{}", help="JSON object of env keyword arguments")
    parser.add_argument("--policy-kwargs", default="{}", help="JSON object of backend settings")
    parser.add_argument("--quiet", action="store_true", help="no live progress line")


def _json_object(text: str, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{flag} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{flag} must be a JSON object")
    return value


def _load_report(path: str) -> dict[str, Any]:
    p = Path(path)
    p = p / "report.json" if p.is_dir() else p
    if not p.is_file():
        raise ConfigError(f"no eval report at {p}; give an `agentrl eval --out` folder or its report.json")
    return json.loads(p.read_text(encoding="utf-8"))


def compare(report_a: dict[str, Any], report_b: dict[str, Any], *, seed: int = 0) -> list[dict[str, Any]]:
    """Per env both reports ran: success of A and B and ``B - A`` with a paired bootstrap
    95% interval over the tasks both ran (per-task success averaged over samples)."""
    from agentrl.eval.stats import paired_bootstrap

    rows = []
    for env_id in report_a["records"]:
        if env_id not in report_b["records"]:
            continue
        per_task = []
        for report in (report_a, report_b):
            tasks: dict[str, list[float]] = {}
            for rec in report["records"][env_id]:
                tasks.setdefault(rec["task_id"], []).append(1.0 if rec["success"] else 0.0)
            per_task.append({t: sum(v) / len(v) for t, v in tasks.items()})
        diff, lo, hi, n = paired_bootstrap(per_task[0], per_task[1], seed=seed)
        rows.append({"env": env_id, "tasks": n, "a": report_a["envs"][env_id]["success_rate"],
                     "b": report_b["envs"][env_id]["success_rate"], "diff": diff, "ci95": [lo, hi],
                     "significant": lo > 0 or hi < 0})
    return rows


def _main_compare(words: list[str]) -> int:
    if len(words) != 3:
        raise ConfigError("usage: agentrl eval compare RUN_A RUN_B")
    rows = compare(_load_report(words[1]), _load_report(words[2]))
    print("| env | tasks | A % | B % | B − A (pts) | 95% paired bootstrap | |")
    print("|---|---:|---:|---:|---:|---|---|")
    for r in rows:
        mark = "real difference" if r["significant"] else "within noise"
        print(f"| {r['env']} | {r['tasks']} | {100 * r['a']:.1f} | {100 * r['b']:.1f} | "
              f"{100 * r['diff']:+.1f} | [{100 * r['ci95'][0]:+.1f}, {100 * r['ci95'][1]:+.1f}] | {mark} |")
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (from the parsed arguments)."""
    words = ["agentrl", "eval"]
    words += ["--oracle"] if args.oracle else ["--policy", args.policy]
    words += ["--envs", args.envs, "--samples", str(args.samples)]
    if args.episodes is not None:
        words += ["--episodes", str(args.episodes)]
    if not args.oracle:
        words += ["--max-turns", str(args.max_turns), "--max-new-tokens", str(args.max_new_tokens),
                  "--max-context", str(args.max_context), "--temperature", str(args.temperature)]
        if args.policy_kwargs != "{}":
            words += ["--policy-kwargs", args.policy_kwargs]
    if args.env_kwargs != "{}":
        words += ["--env-kwargs", args.env_kwargs]
    return " ".join(shlex.quote(w) for w in words + ["--out", args.out])


def main(args: argparse.Namespace) -> int:
    from agentrl.eval.report import build_report, to_markdown, write_reports
    from agentrl.eval.run import Progress, evaluate, evaluate_oracle
    from agentrl.eval.suites import resolve_envs

    if args.words:
        if args.words[0] != "compare":
            raise ConfigError(f"unknown eval action {args.words[0]!r}; use `agentrl eval compare RUN_A RUN_B`")
        return _main_compare(args.words)
    if not args.envs:
        raise ConfigError("give --envs ID,ID|SUITE")
    if bool(args.policy) == bool(args.oracle):
        raise ConfigError("give exactly one of --policy SPEC or --oracle")
    if args.samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {args.samples}")
    import agentrl.envs  # noqa: F401  (registers the built-in envs)

    env_ids = resolve_envs(args.envs)
    env_kwargs = _json_object(args.env_kwargs, "--env-kwargs")
    progress = None if args.quiet else Progress()
    command = _command(args)
    if args.oracle:
        run = evaluate_oracle(env_ids, samples=args.samples, episodes=args.episodes,
                              max_turns=args.max_turns * 4, env_kwargs=env_kwargs, progress=progress)
        policy_name = "oracle"
    else:
        from agentrl.policy import load_policy
        from agentrl.rollout.config import RolloutConfig

        config = RolloutConfig(max_turns=args.max_turns, max_new_tokens=args.max_new_tokens,
                               max_context=args.max_context, temperature=args.temperature,
                               concurrency=args.concurrency, env_kwargs=env_kwargs)
        policy = load_policy(args.policy, **_json_object(args.policy_kwargs, "--policy-kwargs"))
        try:
            run = evaluate(policy, env_ids, samples=args.samples, episodes=args.episodes,
                           config=config, progress=progress)
        finally:
            policy.close()
        policy_name = args.policy
    meta = {"policy": policy_name, "envs": env_ids, "samples": args.samples,
            "episodes": args.episodes, "command": command,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    report = build_report(run, meta)
    paths = write_reports(report, args.out)
    print(to_markdown(report))
    print(f"wrote {paths['json']}, {paths['md']}, {paths['html']}")
    return 0
