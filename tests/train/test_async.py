"""Asynchronous (one-step-off) training: generation overlaps the update, staleness is recorded
per step and bounded by rollout.max_staleness, and a resumed async run loses no spec and
counts none twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from agentrl.errors import ConfigError
from agentrl.train.async_loop import admission_metrics, episode_staleness
from agentrl.train.config import load_config
from agentrl.train.data import read_specs
from agentrl.train.loop import train
from agentrl.trajectory import Trajectory, Turn

from .letter_env import register_letter_env

TOY_ID = register_letter_env("agentrl-tests/AsyncLetterO-v0", "o", "Say oooo.")


def _config(model: Path, run_dir: Path, **extra: str) -> Any:
    o = {"model.path": str(model), "rollout.env": TOY_ID, "rollout.max_turns": "1",
         "rollout.tasks_per_step": "2", "rollout.group_size": "4", "rollout.max_new_tokens": "8",
         "rollout.max_context": "128", "rollout.sync_atol": "1e-4", "trainer.steps": "4",
         "trainer.lr": "1e-2", "trainer.micro_batch_size": "8", "trainer.mode": "async",
         "rollout.max_staleness": "1", "checkpoint.every": "2", "checkpoint.keep": "5",
         "logging.tensorboard": "false", "logging.progress": "false", "logging.run_dir": str(run_dir), **extra}
    return load_config(overrides=[f"{k}={v}" for k, v in o.items()])


def _traj(versions: list[int | None], n_tokens: int = 4) -> Trajectory:
    ids = list(range(2 + n_tokens * len(versions)))
    turns = [Turn(2 + i * n_tokens, 2 + (i + 1) * n_tokens, 0.0, weight_version=v) for i, v in enumerate(versions)]
    return Trajectory(env_id="x", token_ids=ids, loss_mask=[0, 0] + [1] * (len(ids) - 2),
                      logprobs=[0.0] * len(ids), prompt_len=2, turns=turns)


def test_staleness_and_admission_metrics() -> None:
    assert episode_staleness(_traj([3, 4]), 5) == 2  # the oldest turn counts
    assert episode_staleness(_traj([None]), 5) == 0  # unknown versions: not stale
    short, long_ = _traj([1]), _traj([1, 1, 1])
    m = admission_metrics([short, long_], [short])
    assert m["admit/dropped"] == 1.0 and m["admit/turns_gap"] == -1.0 and m["admit/len_gap"] < 0
    with pytest.raises(ConfigError, match="max_staleness"):
        load_config(overrides=["rollout.max_staleness=0"])
    with pytest.raises(ConfigError, match="trainer.mode"):
        load_config(overrides=["trainer.mode=fast"])


def test_one_step_off_on_vllm_records_bounded_staleness(vllm_policy: Any, tiny_model_path: Path,
                                                        tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    try:
        result = train(_config(tiny_model_path, tmp_path / "run"), policy=vllm_policy)
    finally:
        original = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
        vllm_policy.update_weights(original, verify=True, atol=1e-4)
    assert result.steps == 4
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for r in recs:
        assert r["staleness/max"] <= 1 and r["staleness/over_bound"] == 0, r
        assert r["sync/max_abs_diff"] <= 1e-4
        assert r["admit/dropped"] == 0 and r["admit/len_gap"] == 0.0
    assert recs[0]["staleness/max"] == 0  # batch 1: generated on the starting weights
    # batch 2 was generated while update 1 ran, on the weights before it: one step off
    assert recs[1]["staleness/frac_1"] == 1.0, recs[1]
    assert [r["episodes/total"] for r in recs] == [8.0] * 4


def test_async_resume_loses_nothing_and_counts_nothing_twice(tiny_model_path: Path, tmp_path: Path) -> None:
    cfg = _config(tiny_model_path, tmp_path / "run", **{"rollout.backend": "hf", "rollout.sync_atol": "1e-6",
                                                        "rollout.max_staleness": "2"})
    first = train(cfg, stop_after=3)  # batches 4 (and the rest) were in flight; checkpoint at step 2
    assert first.steps == 3 and first.checkpoint.name == "step_2"
    resumed = train(cfg, resume=True)
    assert resumed.steps == 4
    specs = read_specs(tmp_path / "run")
    assert [r["index"] for r in specs] == list(range(4 * 2))  # every spec exactly once, in order
    assert [r["step"] for r in specs] == [1, 1, 2, 2, 3, 3, 4, 4]
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3, 4]
    assert all(r["staleness/max"] <= 2 and r["episodes/total"] == 8.0 for r in recs)
