"""KL estimators (k1, k2, k3), reward shaping and entropy."""

import math

import pytest
import torch

from agentrl.errors import BatchShapeError, ConfigError
from agentrl.losses import (
    KL_ESTIMATORS,
    entropy_from_logits,
    kl_k1,
    kl_k2,
    kl_k3,
    kl_reward_penalty,
)

F64 = torch.float64


def test_kl_estimators_by_hand():
    logp = torch.tensor([[-1.0, -2.0, -0.5]], dtype=F64)
    ref = torch.tensor([[-2.0, -1.0, -0.5]], dtype=F64)
    # d = logp - ref = [1, -1, 0]
    torch.testing.assert_close(kl_k1(logp, ref), torch.tensor([[1.0, -1.0, 0.0]], dtype=F64))
    torch.testing.assert_close(kl_k2(logp, ref), torch.tensor([[0.5, 0.5, 0.0]], dtype=F64))
    # k3 = exp(-d) - 1 + d: exp(-1) - 1 + 1 = 0.367879; exp(1) - 1 - 1 = 0.718282; 0
    torch.testing.assert_close(
        kl_k3(logp, ref), torch.tensor([[math.exp(-1), math.e - 2, 0.0]], dtype=F64)
    )
    assert set(KL_ESTIMATORS) == {"k1", "k2", "k3"}
    with pytest.raises(BatchShapeError):
        kl_k3(logp, ref[:, :2])


def test_k1_and_k3_are_unbiased_monte_carlo():
    # Exact KL(p || q) of two categoricals vs the estimators' means under samples from p.
    p = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
    q = torch.tensor([0.2, 0.5, 0.3], dtype=F64)
    exact = float((p * (p / q).log()).sum())  # 0.5 ln 2.5 + 0.3 ln 0.6 + 0.2 ln(2/3) = 0.22590
    gen = torch.Generator().manual_seed(0)
    y = torch.multinomial(p, 200_000, replacement=True, generator=gen)
    logp, logq = p.log()[y], q.log()[y]
    k1, k3 = float(kl_k1(logp, logq).mean()), float(kl_k3(logp, logq).mean())
    assert k1 == pytest.approx(exact, abs=0.01)
    assert k3 == pytest.approx(exact, abs=0.01)
    assert (kl_k3(logp, logq) >= 0).all()


def test_kl_reward_penalty_is_detached_and_masked():
    logp = torch.tensor([[-1.0, -2.0, -3.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -2.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    pen = kl_reward_penalty(logp, ref, mask, coef=0.1)
    # -0.1 * (logp - ref) = [-0.05, 0, (masked)]
    torch.testing.assert_close(pen, torch.tensor([[-0.05, 0.0, 0.0]]))
    assert not pen.requires_grad
    pen3 = kl_reward_penalty(logp, ref, mask, coef=1.0, estimator=kl_k3)
    torch.testing.assert_close(pen3, torch.tensor([[-(math.exp(-0.5) - 1 + 0.5), 0.0, 0.0]]))
    with pytest.raises(ConfigError):
        kl_reward_penalty(logp, ref, mask, coef=-1.0)


def test_entropy_by_hand_and_gradcheck():
    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)]]], dtype=F64)
    # uniform over 2: ln 2; p = [1/4, 3/4]: -(0.25 ln 0.25 + 0.75 ln 0.75) = 0.562335
    h = entropy_from_logits(logits)
    torch.testing.assert_close(
        h, torch.tensor([[math.log(2), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))]], dtype=F64)
    )
    x = torch.randn(2, 3, 5, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(entropy_from_logits, (x,))
    lp = torch.randn(2, 3, dtype=F64, requires_grad=True)
    ref = torch.randn(2, 3, dtype=F64)
    for fn in (kl_k1, kl_k2, kl_k3):
        assert torch.autograd.gradcheck(lambda a, f=fn: f(a, ref), (lp,))
