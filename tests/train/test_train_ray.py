"""`agentrl train rollout.workers=2`: rollout on Ray actors, each with its own sampler."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'agentrl[ray]')")

from agentrl.errors import ConfigError  # noqa: E402
from agentrl.train.config import load_config  # noqa: E402
from agentrl.train.loop import train  # noqa: E402


def test_workers_refused_with_a_shared_server_and_negative():
    with pytest.raises(ConfigError, match="backend vllm or hf"):
        load_config(overrides=["rollout.workers=2", "rollout.backend=openai",
                               "rollout.server_url=http://127.0.0.1:1"])
    with pytest.raises(ConfigError, match="rollout.workers must be >= 0"):
        load_config(overrides=["rollout.workers=-1"])


def test_training_steps_with_two_ray_workers(tiny_model_path: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")  # a shared machine
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=200 * 1024 * 1024)
    try:
        config = load_config(overrides=[
            f"model.path={tiny_model_path}", "rollout.env=agentrl/GuessNumber-v0",
            "rollout.env_kwargs.high=8", "rollout.env_kwargs.max_turns=2", "rollout.max_turns=2",
            "rollout.backend=hf", "rollout.workers=2", "rollout.tasks_per_step=2",
            "rollout.group_size=4", "rollout.max_new_tokens=8", "rollout.max_context=256",
            "rollout.concurrency=8", "trainer.steps=2", "trainer.lr=0.01",
            "trainer.micro_batch_size=8", "logging.tensorboard=false", "logging.progress=false",
            f"logging.run_dir={tmp_path / 'run'}",
        ])
        result = train(config)
    finally:
        ray.shutdown()
    recs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2]
    for r in recs:
        assert r["episodes/total"] == 8 and r["episodes/invalid"] == 0
        assert r["sync/max_abs_diff"] <= config.rollout.sync_atol  # every worker verified
        assert r["sync/weight_version"] == r["step"]
    start = load_file(str(tiny_model_path / "model.safetensors"))
    end = load_file(str(result.checkpoint / "model.safetensors"))
    assert any(not (start[k] == end[k]).all() for k in start)
