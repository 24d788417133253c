"""Checkpoints: complete round trip, keep-last-K, partial folders from a kill are ignored."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from agentrl.errors import CheckpointError
from agentrl.train.checkpoint import (
    clean_partial,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)


@pytest.fixture()
def parts(tiny_model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    return model, tok, opt, sched


def _one_step(model, opt, sched):
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    model(input_ids=ids).logits.sum().backward()
    opt.step()
    sched.step()
    opt.zero_grad()


def test_round_trip_restores_weights_optimizer_scheduler_and_rng(tmp_path, parts):
    from transformers import AutoModelForCausalLM

    model, tok, opt, sched = parts
    _one_step(model, opt, sched)
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    path = save_checkpoint(tmp_path, 1, model=model, tokenizer=tok, optimizer=opt, scheduler=sched,
                           state={"cursor": 8})
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(0), np.random.seed(0), torch.manual_seed(0)  # disturb

    loaded = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)  # from_pretrained works
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    opt2 = torch.optim.AdamW(loaded.parameters(), lr=1e-3)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 1.0 / (s + 1))
    state = load_checkpoint(path, optimizer=opt2, scheduler=sched2)
    assert state == {"cursor": 8, "step": 1}
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    assert sched2.last_epoch == sched.last_epoch == 1
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys()
    for k in s1:
        assert torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"])
    # both continue identically
    _one_step(model, opt, sched)
    _one_step(loaded, opt2, sched2)
    for a, b in zip(model.parameters(), loaded.parameters(), strict=True):
        assert torch.equal(a, b)


def test_keep_last_k_and_partial_folders(tmp_path, parts):
    model, tok, opt, sched = parts
    for step in (2, 4, 6):
        save_checkpoint(tmp_path, step, model=model, tokenizer=tok, optimizer=opt, scheduler=sched,
                        state={"cursor": step}, keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [4, 6]
    # a process killed mid-write leaves a temporary folder: never picked, cleaned on resume
    partial = tmp_path / "checkpoints" / ".tmp-step_8-999"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"torn")
    assert latest_checkpoint(tmp_path).name == "step_6"
    assert clean_partial(tmp_path) == 1 and not partial.exists()
    assert json.loads((latest_checkpoint(tmp_path) / "state.json").read_text())["cursor"] == 6


def test_incomplete_checkpoint_refused(tmp_path, parts):
    model, tok, opt, sched = parts
    path = save_checkpoint(tmp_path, 1, model=model, tokenizer=tok, optimizer=opt, scheduler=sched,
                           state={"cursor": 0})
    (path / "trainer_state.pt").unlink()
    with pytest.raises(CheckpointError, match="trainer_state.pt"):
        load_checkpoint(path, optimizer=opt, scheduler=sched)
