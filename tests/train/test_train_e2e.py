"""Real training steps end to end: tiny model, the session's CPU vLLM engine, weight sync.

The toy env rewards the share of the letter ``e`` in a one-turn reply: any random model
earns some reward and GRPO can raise it within a few steps, so "reward goes up" is a real
check of the whole chain (collect -> credit -> update -> sync -> collect on new weights).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from agentrl.train.config import load_config
from agentrl.train.loop import train

from .letter_env import register_letter_env

TOY_ID = register_letter_env("agentrl-tests/LetterE-v0", "e", "Write the letter e many times.")


@pytest.fixture
def restore_engine(vllm_policy: Any, tiny_model_path: Path):
    """The session engine gets the tiny model's own weights back after the test."""
    yield vllm_policy
    from transformers import AutoModelForCausalLM

    original = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    vllm_policy.update_weights(original, verify=True, atol=1e-4)


def _config(tiny_model_path: Path, run_dir: Path, **extra: str) -> Any:
    overrides = {
        "model.path": str(tiny_model_path), "rollout.env": TOY_ID, "rollout.max_turns": "1",
        "rollout.tasks_per_step": "4", "rollout.group_size": "8", "rollout.max_new_tokens": "12",
        "rollout.max_context": "256", "rollout.truncate_on_length": "false",
        "rollout.sync_atol": "1e-4", "trainer.steps": "6", "trainer.lr": "2e-2",
        "trainer.micro_batch_size": "32", "trainer.min_lr_ratio": "1.0",
        "checkpoint.every": "3", "logging.tensorboard": "false", "logging.progress": "false",
        "logging.run_dir": str(run_dir), **extra,
    }
    return load_config(overrides=[f"{k}={v}" for k, v in overrides.items()])


def test_grpo_steps_on_vllm_change_weights_sync_exactly_and_raise_reward(
    restore_engine: Any, tiny_model_path: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    result = train(_config(tiny_model_path, tmp_path / "run"), policy=restore_engine)
    assert result.steps == 6
    recs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3, 4, 5, 6]
    for r in recs:
        assert torch.isfinite(torch.tensor(r["loss/policy"])), r
        # the engine's logprobs after each push equal the learner's on the probe text
        assert r["sync/max_abs_diff"] <= 1e-4, r["sync/max_abs_diff"]
    # weights changed: the last checkpoint differs from the starting model
    start = load_file(str(tiny_model_path / "model.safetensors"))
    end = load_file(str(result.checkpoint / "model.safetensors"))
    changed = [k for k in start if not torch.equal(start[k], end[k])]
    assert len(changed) > len(start) // 2
    # the engine generates with the new weights: reward goes up over the run
    first = sum(r["reward/mean"] for r in recs[:2]) / 2
    last = sum(r["reward/mean"] for r in recs[-2:]) / 2

    assert last > first + 0.05, (first, last, [r["reward/mean"] for r in recs])
    # the sampler-learner mismatch breakdown is reported
    assert any(k.startswith("mismatch/") for k in recs[-1]), sorted(recs[-1])
