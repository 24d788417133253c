"""``agentrl train``: run the default recipe, a YAML config with overrides, or resume a run.

    agentrl train                                   the built-in default run
    agentrl train --config run.yaml trainer.lr=1e-5 algo.advantage=gigpo
    agentrl train --resume runs/train               continue from the last checkpoint
    agentrl train --algo dpo --data rollouts.jsonl  offline DPO/IPO/KTO on recorded trajectories
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from agentrl.errors import ConfigError
from agentrl.train.config import TrainConfig, load_config

__all__ = ["add_arguments", "main", "default_config"]


def default_config() -> TrainConfig:
    """The default run's config: the recipe's (``agentrl.train.recipes.default_config``),
    or a small GRPO run on the tiny model while no recipe is installed."""
    try:
        recipes = importlib.import_module("agentrl.train.recipes")
    except ModuleNotFoundError:
        recipes = None
    if recipes is not None and hasattr(recipes, "default_config"):
        return recipes.default_config()
    return load_config(overrides=[
        "rollout.env=agentrl/GuessNumber-v0", "rollout.env_kwargs.high=8",
        "rollout.env_kwargs.max_turns=4", "rollout.max_turns=4", "rollout.tasks_per_step=8",
        "rollout.group_size=8", "rollout.max_new_tokens=16", "trainer.steps=20", "trainer.lr=1e-3",
        "eval.episodes=32",
    ])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted overrides of the config, e.g. trainer.lr=1e-5 algo.advantage=gigpo")
    p.add_argument("--config", help="YAML config file (default: the built-in default run)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last checkpoint (its config.yaml)")
    p.add_argument("--verbose", action="store_true", help="show vLLM's own log lines")
    p.add_argument("--algo", choices=["dpo", "ipo", "kto"],
                   help="offline preference training on --data (= offline.loss=ALGO)")
    p.add_argument("--data", metavar="FILE.jsonl",
                   help="trajectory file for offline training (= offline.data=FILE; default loss dpo)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config and exit (nothing is run)")


def main(args: argparse.Namespace) -> int:
    from agentrl.train.config import config_to_yaml
    from agentrl.train.loop import _quiet_vllm, train

    _quiet_vllm(args.verbose)  # before anything imports vLLM
    overrides = list(args.overrides)
    if args.algo and not args.data and not args.resume:
        raise ConfigError("--algo needs --data FILE.jsonl (trajectories from `agentrl rollout --out`)")
    if args.algo:
        overrides.append(f"offline.loss={args.algo}")
    if args.data:
        overrides.append(f"offline.data={args.data}")
    if args.verbose:
        overrides.append("logging.verbose=true")
    if args.resume:
        if args.config:
            raise ConfigError("--resume uses the run's own config.yaml; do not pass --config too")
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"{run_dir} has no config.yaml: not a run folder of `agentrl train`")
        config = load_config(run_dir / "config.yaml", [*overrides, f"logging.run_dir={run_dir}"])
    elif args.data:  # offline: the plain defaults (or --config), never the recipe
        config = load_config(args.config, overrides)
    elif args.config:
        from agentrl.train.recipes import is_recipe_file, run_default

        if is_recipe_file(args.config) and not args.print_config:
            return int(run_default(overrides, config=args.config))  # SFT warm-start, then RL
        config = load_config(args.config, overrides)
    else:
        runner = _recipe_runner()
        if runner is not None and not args.print_config:
            return int(runner(overrides))
        config = load_config(overrides=overrides, base=default_config())
    if args.print_config:
        print(config_to_yaml(config), end="")
        return 0
    if config.offline.data is not None:
        from agentrl.train.offline import run_offline

        result = run_offline(config, resume=bool(args.resume))
    else:
        result = train(config, resume=bool(args.resume))
    print(f"run folder: {result.run_dir}  (steps {result.steps}; checkpoint {result.checkpoint})")
    if result.eval_before is not None and result.eval_after is not None:
        print(f"held-out success: before {result.eval_before['success']:.3f} -> "
              f"after {result.eval_after['success']:.3f}")
    print(f"curves: agentrl plot {result.run_dir}")
    return 0


def _recipe_runner():  # noqa: ANN202  (a callable(overrides) -> int, or None)
    """The recipe's whole default run (SFT warm-start, then RL), if the recipe provides one."""
    try:
        recipes = importlib.import_module("agentrl.train.recipes")
    except ModuleNotFoundError:
        return None
    return getattr(recipes, "run_default", None)
