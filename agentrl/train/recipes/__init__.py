"""Shipped training recipes: the default run of ``agentrl train`` and its settings.

``agentrl train`` with no arguments calls :func:`run_default` (SFT warm-start on oracle
demonstrations, then RL with the trainer's loop, held-out success measured at the start,
after the warm-start and after RL). :func:`default_config` is the RL phase's config
(``agentrl train --print-config`` shows it). YAML examples live in ``examples/``.
"""

from agentrl.train.recipes.default import (
    DEFAULT_RUN_DIR,
    RecipeConfig,
    default_config,
    default_recipe,
    is_recipe_file,
    load_recipe,
    run_default,
    run_recipe,
)

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
