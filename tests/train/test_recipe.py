"""Recipes: the default run's overrides and recipe YAML files (shipped examples included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentrl.errors import ConfigError
from agentrl.train.config import load_config
from agentrl.train.recipes import default_recipe, is_recipe_file, load_recipe

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_default_recipe_splits_sft_and_rl_keys():
    r = default_recipe(["sft.steps=7", "sft.lora_r=4", "trainer.steps=3", "run_dir=/tmp/x"])
    assert (r.sft_steps, r.sft_lora_r, r.train.trainer.steps) == (7, 4, 3)
    assert r.train.logging.run_dir == "/tmp/x/rl"
    with pytest.raises(ConfigError, match="unknown recipe key 'sft.nope'"):
        default_recipe(["sft.nope=1"])
    with pytest.raises(ConfigError, match="cannot read"):
        default_recipe(["sft.steps=many"])


def test_shipped_examples_load():
    assert is_recipe_file(EXAMPLES / "smollm2_guess.yaml")
    r = load_recipe(EXAMPLES / "smollm2_guess.yaml", ["trainer.steps=2"])
    assert r.model == "smollm2-135m" and r.sft_dtype == "bfloat16" and r.sft_lora_r == 16
    assert r.train.trainer.steps == 2 and r.train.logging.run_dir == "runs/smollm2-guess/rl"
    assert not is_recipe_file(EXAMPLES / "tiny_guess_gigpo.yaml")
    assert load_config(EXAMPLES / "tiny_guess_gigpo.yaml").algo.advantage == "gigpo"


def test_recipe_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        is_recipe_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sft: 3\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_recipe(bad)
    overlap = tmp_path / "overlap.yaml"
    overlap.write_text("sft: {demo_seed: 5}\neval: {episodes: 10, seed: 0}\n")
    with pytest.raises(ConfigError, match="overlap the held-out seeds"):
        load_recipe(overlap)
