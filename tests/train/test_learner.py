"""Learner math: schedule, exact gradient accumulation, invalid episodes, update direction."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from agentrl.credit import build_credit_batch
from agentrl.models.logprobs import token_logprobs
from agentrl.train.config import load_config
from agentrl.train.learner import Learner, Scored, lr_lambda
from agentrl.trajectory import Trajectory, Turn


def test_lr_schedule_warmup_then_cosine():
    f = lr_lambda(total=10, warmup=2, min_ratio=0.1)
    assert f(0) == pytest.approx(0.5) and f(1) == pytest.approx(1.0)
    assert f(2) == pytest.approx(1.0)  # cosine starts at the peak
    assert f(6) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(10) == pytest.approx(0.1) and f(50) == pytest.approx(0.1)


def _traj(prompt: list[int], reply: list[int], group: str, reward: float, *, error: bool = False):
    ids = prompt + reply
    n = len(ids)
    return Trajectory(
        env_id="toy", token_ids=ids, loss_mask=[0] * len(prompt) + [1] * len(reply),
        logprobs=[0.0] * len(prompt) + [-2.0] * len(reply), prompt_len=len(prompt),
        turns=[Turn(len(prompt), n, reward)], group_id=group,
        end_reason="error" if error else "terminated", terminated=not error,
        error="boom" if error else None,
    )


@pytest.fixture(scope="module")
def model(tiny_model_path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)


def _batch():
    trajs = [
        _traj([5, 6, 7], [40, 41, 42, 43], "a", 1.0),
        _traj([5, 6, 7], [50, 51], "a", 0.0),
        _traj([8, 9], [60, 61, 62], "b", 1.0),
        _traj([8, 9], [70, 71, 72, 73, 74, 75], "b", 0.0),
    ]
    return build_credit_batch(trajs)


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_micro_batches_give_the_full_batch_gradient(model, aggregation):
    batch = _batch()
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])[:, None] * batch.mask
    results = []
    for micro in (4, 1):
        cfg = load_config(overrides=[f"trainer.micro_batch_size={micro}", "trainer.lr=1e-2",
                                     f"algo.aggregation={aggregation}", "trainer.max_grad_norm=null"])
        m = copy.deepcopy(model)
        learner = Learner(cfg, m)
        learner.update(batch, adv, None, Scored(None, None, None))
        # the accumulated gradient of the (single) minibatch stays on the parameters
        results.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    assert results[0].abs().max() > 1e-3
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-7)


def test_positive_advantage_raises_its_logprob_and_invalid_episodes_are_ignored(model):
    good = _traj([5, 6, 7], [40, 41, 42, 43], "a", 1.0)
    broken = _traj([8, 9], [60, 61, 62], "b", 0.0, error=True)
    batch = build_credit_batch([good, broken])
    assert batch.valid.tolist() == [True, False]
    adv = torch.tensor([1.0, -5.0])[:, None] * batch.mask  # the invalid one must not count
    cfg = load_config(overrides=["trainer.lr=1e-2", "algo.is_correction=none"])
    m = copy.deepcopy(model)
    with torch.no_grad():
        before = token_logprobs(m, batch.token_ids, batch.attention_mask)
    metrics = Learner(cfg, m).update(batch, adv, None, Scored(None, None, None))
    with torch.no_grad():
        after = token_logprobs(m, batch.token_ids, batch.attention_mask)
    gain = ((after - before) * batch.mask)[0].sum()
    assert gain > 0
    assert math.isfinite(metrics["loss/policy"]) and metrics["train/grad_norm"] > 0
    # the same update as training on the valid episode alone
    m2 = copy.deepcopy(model)
    solo = build_credit_batch([good])
    Learner(cfg, m2).update(solo, adv[:1, : solo.mask.shape[1]], None, Scored(None, None, None))
    for a, b in zip(m.parameters(), m2.parameters(), strict=True):  # same minibatch gradient
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-7)
