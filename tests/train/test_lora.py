"""LoRA in the RL trainer: adapters train, merged weights sync into vLLM (checked by
logprobs), checkpoints hold a peft adapter, and a resumed LoRA run equals an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from agentrl.errors import ConfigError
from agentrl.train.config import load_config
from agentrl.train.loop import train

from .letter_env import register_letter_env

pytest.importorskip("peft")

TOY_ID = register_letter_env("agentrl-tests/LoraLetterA-v0", "a", "Write a lot of a.")


def _config(model: Path, run_dir: Path, **extra: str) -> Any:
    overrides = {
        "model.path": str(model), "rollout.env": TOY_ID, "rollout.max_turns": "1",
        "rollout.tasks_per_step": "2", "rollout.group_size": "4", "rollout.max_new_tokens": "8",
        "rollout.max_context": "128", "rollout.sync_atol": "1e-4", "trainer.steps": "3",
        "trainer.lr": "5e-2", "trainer.micro_batch_size": "8", "trainer.min_lr_ratio": "1.0",
        "checkpoint.every": "2", "checkpoint.keep": "5", "logging.tensorboard": "false",
        "logging.progress": "false", "logging.run_dir": str(run_dir), "lora.r": "4",
        "lora.alpha": "8", **extra,
    }
    return load_config(overrides=[f"{k}={v}" for k, v in overrides.items()])


def test_lora_config_refusals() -> None:
    with pytest.raises(ConfigError, match="lora.r"):
        load_config(overrides=["lora.r=-1"])
    with pytest.raises(ConfigError, match="critic=model"):
        load_config(overrides=["lora.r=4", "algo.advantage=gae", "algo.critic=model"])


def test_lora_adapter_trains_and_merged_sync_matches_engine(
    vllm_policy: Any, tiny_model_path: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from agentrl.models.logprobs import token_logprobs
    from agentrl.train.lora import merged_state_dict

    try:
        result = train(_config(tiny_model_path, tmp_path / "run"), policy=vllm_policy)
        recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in recs] == [1, 2, 3]
        for r in recs:  # every push of merged weights: engine logprobs == learner's adapted model
            assert r["sync/max_abs_diff"] <= 1e-4, r
        ckpt = result.checkpoint
        assert ckpt is not None and (ckpt / "adapter_model.safetensors").is_file()
        assert not (ckpt / "model.safetensors").exists()  # the adapter only, not full weights
        adapter = load_file(str(ckpt / "adapter_model.safetensors"))
        assert any("lora_B" in k and bool(v.abs().max() > 0) for k, v in adapter.items())  # B moved off 0
        base = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
        before = {k: v.clone() for k, v in base.state_dict().items()}
        loaded = PeftModel.from_pretrained(base, str(ckpt))
        merged = merged_state_dict(loaded)
        changed = [k for k in before if not torch.equal(before[k], merged[k])]
        assert changed and all("proj" in k for k in changed), changed  # only adapted layers moved
        # the engine now serves base + adapter: its logprobs equal the checkpoint's model
        ids = vllm_policy.tokenizer.encode("Write a lot of a. aaaa banana", add_special_tokens=False)
        engine = torch.tensor(vllm_policy._loop.run_sync(vllm_policy.prompt_logprobs(ids)))
        with torch.no_grad():
            mine = token_logprobs(loaded, torch.tensor([ids]))[0, 1:]
        assert float((engine - mine).abs().max()) <= 1e-4
    finally:
        original = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
        vllm_policy.update_weights(original, verify=True, atol=1e-4)


def test_lora_resume_equals_uninterrupted(tiny_model_path: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    extra = {"rollout.backend": "hf", "trainer.steps": "4", "rollout.sync_atol": "1e-6"}
    full = train(_config(tiny_model_path, tmp_path / "full", **extra))
    part = _config(tiny_model_path, tmp_path / "part", **extra)
    first = train(part, stop_after=3)  # checkpoint at step 2 only: step 3 is redone on resume
    assert first.steps == 3 and first.checkpoint.name == "step_2"
    resumed = train(part, resume=True)
    assert resumed.steps == 4
    a = load_file(str(full.checkpoint / "adapter_model.safetensors"))
    b = load_file(str(resumed.checkpoint / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
