"""Training with rollout.backend=openai: the session's vLLM server (dev mode) samples, the
learner's weights are pushed into it over /collective_rpc and checked by logprobs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from agentrl.errors import ConfigError
from agentrl.train.config import load_config
from agentrl.train.loop import train

from .letter_env import register_letter_env

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

TOY_ID = register_letter_env("agentrl-tests/ServerLetterA-v0", "a", "Say aaaa.")


def _config(model: Path, run_dir: Path, **extra: str) -> Any:
    o = {"model.path": str(model), "rollout.env": TOY_ID, "rollout.max_turns": "1",
         "rollout.tasks_per_step": "2", "rollout.group_size": "4", "rollout.max_new_tokens": "8",
         "rollout.max_context": "128", "rollout.sync_atol": "1e-4", "trainer.steps": "2",
         "trainer.lr": "1e-2", "trainer.micro_batch_size": "8", "checkpoint.every": "2",
         "logging.tensorboard": "false", "logging.progress": "false",
         "logging.run_dir": str(run_dir), **extra}  # fmt: skip
    return load_config(overrides=[f"{k}={v}" for k, v in o.items()])


def test_backend_openai_needs_a_server_url() -> None:
    with pytest.raises(ConfigError, match="rollout.server_url.*VLLM_SERVER_DEV_MODE=1"):
        load_config(overrides=["rollout.backend=openai"])
    with pytest.raises(ConfigError, match="rollout.backend must be one of vllm, hf, openai"):
        load_config(overrides=["rollout.backend=tgi"])


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_train_on_a_vllm_server(
    mode: str, vllm_server: Any, tiny_model_path: Path, tmp_path: Path
) -> None:
    from agentrl.policy import load_policy

    cfg = _config(tiny_model_path, tmp_path / "run", **{
        "rollout.backend": "openai", "rollout.server_url": vllm_server.url, "trainer.mode": mode})
    server = load_policy(f"openai:{vllm_server.url}", weight_sync="vllm-dev")
    try:
        result = train(cfg)
        assert result.steps == 2
        recs = [json.loads(line)
                for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in recs] == [1, 2]
        for r in recs:  # the server's logprobs after each push equal the learner's
            assert r["sync/max_abs_diff"] <= 1e-4, r
            assert torch.isfinite(torch.tensor(r["loss/policy"])), r
        # the server holds the trained weights: its label is the run's last version
        assert asyncio.run(server.server_weight_version()) == str(int(recs[-1]["sync/weight_version"]))
    finally:  # the server is shared: give it the tiny model's weights back
        from transformers import AutoModelForCausalLM

        original = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
        assert server.update_weights(original, atol=1e-4) < 1e-4
        server.close()
