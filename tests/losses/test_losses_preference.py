"""DPO, IPO, KTO and best-vs-worst pairing."""

import math

import pytest
import torch

from agentrl.errors import BatchShapeError, ConfigError
from agentrl.losses import (
    best_worst_pairs,
    dpo_loss,
    ipo_loss,
    kto_loss,
    kto_reference_point,
    sequence_logprobs,
)

F64 = torch.float64


def _t(*xs):
    return torch.tensor(xs, dtype=F64)


def test_dpo_by_hand():
    # h = (pi_c - ref_c) - (pi_r - ref_r) = (-1 + 2) - (-3 + 2) = 2; beta h = 1
    loss = dpo_loss(_t(-1.0), _t(-3.0), _t(-2.0), _t(-2.0), beta=0.5)
    # -log sigmoid(1) = log(1 + e^-1) = 0.313262
    torch.testing.assert_close(loss, _t(math.log1p(math.exp(-1))))
    smooth = dpo_loss(_t(-1.0), _t(-3.0), _t(-2.0), _t(-2.0), beta=0.5, label_smoothing=0.1)
    # 0.9 * log(1 + e^-1) + 0.1 * log(1 + e^1) = 0.281936 + 0.131326
    torch.testing.assert_close(smooth, _t(0.9 * math.log1p(math.exp(-1)) + 0.1 * math.log1p(math.e)))


def test_ipo_by_hand():
    # h = 2 as above; target 1 / (2 beta)
    torch.testing.assert_close(ipo_loss(_t(-1.0), _t(-3.0), _t(-2.0), _t(-2.0), beta=0.5), _t(1.0))  # (2-1)^2
    torch.testing.assert_close(ipo_loss(_t(-1.0), _t(-3.0), _t(-2.0), _t(-2.0), beta=0.25), _t(0.0))  # (2-2)^2


def test_kto_by_hand():
    policy, ref = _t(-1.0, -3.0), _t(-2.0, -2.0)  # r = [1, -1]
    desirable = torch.tensor([True, False])
    loss = kto_loss(policy, ref, desirable, reference_point=0.5, beta=1.0, desirable_weight=1.0,
                    undesirable_weight=2.0)
    # desirable: 1 - sigmoid(1 - 0.5) = 0.377541; undesirable: 2 * (1 - sigmoid(0.5 - (-1))) = 2 * 0.182426
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    torch.testing.assert_close(loss, _t(1 - sig(0.5), 2 * (1 - sig(1.5))))
    # z0 = max(0, mean(r)): mean(1, -1, 2) = 2/3; all negative -> 0
    torch.testing.assert_close(kto_reference_point(_t(-1.0, -3.0, 0.0), _t(-2.0, -2.0, -2.0)), _t(2 / 3)[0])
    torch.testing.assert_close(kto_reference_point(_t(-3.0), _t(-2.0)), _t(0.0)[0])


def test_best_worst_pairs_skip_degenerate_groups():
    rewards = torch.tensor([1.0, 3.0, 2.0, 5.0, 5.0, 7.0, 0.0, -1.0])
    groups = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3])
    chosen, rejected = best_worst_pairs(rewards, groups)
    # group 0: best index 1 (3.0), worst 0 (1.0); group 1: equal -> skipped; group 2: size 1 -> skipped;
    # group 3: best 6 (0.0), worst 7 (-1.0)
    assert chosen.tolist() == [1, 6] and rejected.tolist() == [0, 7]


def test_sequence_logprobs_ignore_env_tokens():
    lp = torch.tensor([[-1.0, -5.0, -2.0], [-0.5, 0.0, 0.0]], dtype=F64)
    mask = torch.tensor([[1, 0, 1], [1, 0, 0]], dtype=F64)
    torch.testing.assert_close(sequence_logprobs(lp, mask), _t(-3.0, -0.5))
    torch.testing.assert_close(sequence_logprobs(lp, mask, average=True), _t(-1.5, -0.5))


def test_preference_losses_validate():
    with pytest.raises(ConfigError):
        dpo_loss(_t(0.0), _t(0.0), _t(0.0), _t(0.0), beta=0.0)
    with pytest.raises(ConfigError):
        dpo_loss(_t(0.0), _t(0.0), _t(0.0), _t(0.0), label_smoothing=0.5)
    with pytest.raises(BatchShapeError):
        ipo_loss(_t(0.0, 1.0), _t(0.0), _t(0.0), _t(0.0))
    with pytest.raises(BatchShapeError):
        kto_loss(_t(0.0, 1.0), _t(0.0, 1.0), torch.tensor([True]), 0.0)


def test_preference_gradcheck():
    torch.manual_seed(0)
    pc, pr = torch.randn(4, dtype=F64, requires_grad=True), torch.randn(4, dtype=F64, requires_grad=True)
    rc, rr = torch.randn(4, dtype=F64), torch.randn(4, dtype=F64)
    assert torch.autograd.gradcheck(lambda a, b: dpo_loss(a, b, rc, rr, 0.3, 0.1), (pc, pr))
    assert torch.autograd.gradcheck(lambda a, b: ipo_loss(a, b, rc, rr, 0.3), (pc, pr))
    desirable = torch.tensor([True, False, True, False])
    assert torch.autograd.gradcheck(lambda a: kto_loss(a, rc, desirable, 0.2, 0.5, 1.0, 1.5), (pc,))
    tok = torch.randn(2, 3, dtype=F64, requires_grad=True)
    mask = torch.tensor([[1, 0, 1], [1, 1, 0]], dtype=F64)
    assert torch.autograd.gradcheck(lambda x: sequence_logprobs(x, mask, average=True), (tok,))
