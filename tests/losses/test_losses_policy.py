"""Ratios, PPO clipped surrogate, value loss and aggregation: hand values and gradchecks."""

import math

import pytest
import torch

from agentrl.errors import BatchShapeError, ConfigError
from agentrl.losses import (
    aggregate,
    clipped_value_loss,
    constant_normalizer,
    gspo_token_ratio,
    ppo_clip_loss,
    seq_mean_token_mean,
    seq_mean_token_sum,
    sequence_ratio,
    token_mean,
    token_ratio,
)

F64 = torch.float64


def _close(x: torch.Tensor, expected) -> None:
    torch.testing.assert_close(x, torch.as_tensor(expected, dtype=x.dtype))


def test_ppo_clip_loss_by_hand_with_clip_higher_and_dual_clip():
    ratio = torch.tensor([[0.5, 1.0, 1.5, 2.0, 4.0, 0.5]], dtype=F64, requires_grad=True)
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0, -2.0, -1.0]], dtype=F64)
    out = ppo_clip_loss(ratio, adv, clip_low=0.2, clip_high=0.28, dual_clip=3.0)
    # t0: A>0, r=0.5: max(-0.5, -clip(0.5)=-0.8) = -0.5               (no clip for A>0 below 1)
    # t1: r=1: max(1, 1) = 1
    # t2: A>0, r=1.5 > 1.28: max(-1.5, -1.28) = -1.28                  (clipped high)
    # t3: A<0, r=2: max(2, 1.28) = 2; dual cap -3 * -1 = 3 -> 2
    # t4: A=-2, r=4: max(8, 2.56) = 8; dual cap 6 -> 6                  (dual clipped)
    # t5: A<0, r=0.5 < 0.8: max(0.5, 0.8) = 0.8                         (clipped low)
    _close(out.loss, [[-0.5, 1.0, -1.28, 2.0, 6.0, 0.8]])
    assert out.clipped_high.tolist() == [[False, False, True, False, False, False]]
    assert out.clipped_low.tolist() == [[False, False, False, False, False, True]]
    assert out.dual_clipped.tolist() == [[False, False, False, False, True, False]]
    # Gradient w.r.t. the ratio: -A where unclipped, 0 where any clip is active.
    out.loss.sum().backward()
    _close(ratio.grad, [[-1.0, 1.0, 0.0, 1.0, 0.0, 0.0]])


def test_ppo_clip_high_defaults_to_clip_low_and_without_dual_clip_is_unbounded():
    ratio = torch.tensor([[1.3, 4.0]], dtype=F64)
    adv = torch.tensor([[1.0, -2.0]], dtype=F64)
    out = ppo_clip_loss(ratio, adv, clip_low=0.2)
    # t0: max(-1.3, -1.2) = -1.2; t1: max(8, 2 * 1.2 = 2.4) = 8 (no dual clip)
    _close(out.loss, [[-1.2, 8.0]])


def test_ppo_clip_loss_with_sequence_ratio_broadcasts():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, 0.0]], dtype=F64)
    old = torch.tensor([[-1.1, -2.3, -8.0], [-1.0, -1.2, 0.0]], dtype=F64)
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]], dtype=F64)
    s = sequence_ratio(logp, old, mask)
    # row 0: mean(0.1, 0.3) = 0.2 (the masked 5.0 is ignored); row 1: mean(0, 0.2) = 0.1
    _close(s, [[math.exp(0.2)], [math.exp(0.1)]])
    adv = torch.tensor([[1.0, 1.0, 0.0], [-1.0, -1.0, 0.0]], dtype=F64)
    out = ppo_clip_loss(s, adv, clip_low=0.1, clip_high=0.1)
    # row 0: e^0.2 = 1.2214 > 1.1 -> -1.1 on both tokens; row 1: e^0.1 = 1.10517 -> max(1.10517, 1.1)
    _close(out.loss, [[-1.1, -1.1, -0.0], [math.exp(0.1), math.exp(0.1), 0.0]])
    assert out.clipped_high[0, :2].all() and not out.clipped_low.any()


def test_gspo_token_ratio_value_and_gradient():
    logp = torch.tensor([[-1.0, -2.0, -3.0]], dtype=F64, requires_grad=True)
    old = torch.tensor([[-1.1, -2.3, -3.0]], dtype=F64)
    mask = torch.tensor([[1, 1, 1]], dtype=F64)
    r = gspo_token_ratio(logp, old, mask)
    s = math.exp((0.1 + 0.3 + 0.0) / 3)
    _close(r, [[s, s, s]])
    coef = torch.tensor([[1.0, 2.0, 3.0]], dtype=F64)
    (r * coef).sum().backward()
    # d/dlogp_t of sum_t c_t * s_i * exp(logp_t - sg(logp_t)) = s_i * c_t
    _close(logp.grad, [[s * 1.0, s * 2.0, s * 3.0]])


def test_clipped_value_loss_by_hand():
    values = torch.tensor([[1.0, 0.6, 0.0]], dtype=F64)
    old = torch.tensor([[0.5, 0.5, 0.0]], dtype=F64)
    returns = torch.tensor([[2.0, 0.0, 1.0]], dtype=F64)
    out = clipped_value_loss(values, old, returns, clip=0.2)
    # t0: (1 - 2)^2 = 1; clipped V = 0.5 + 0.2 = 0.7 -> (0.7 - 2)^2 = 1.69; 0.5 * max = 0.845
    # t1: change 0.1 is inside the clip -> 0.5 * 0.6^2 = 0.18
    # t2: 0.5 * (0 - 1)^2 = 0.5
    _close(out.loss, [[0.845, 0.18, 0.5]])
    assert out.clipped.tolist() == [[True, False, False]]
    _close(clipped_value_loss(values, old, returns, clip=None).loss, [[0.5, 0.18, 0.5]])


def test_aggregations_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]], dtype=F64)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=F64)  # the 9s are padding
    _close(token_mean(x, mask), (1 + 2 + 3 + 4) / 4)  # 2.5
    _close(seq_mean_token_mean(x, mask), ((1 + 2 + 3) / 3 + 4 / 1) / 2)  # 3.0
    _close(seq_mean_token_sum(x, mask), ((1 + 2 + 3) + 4) / 2)  # 5.0
    _close(constant_normalizer(x, mask, max_tokens=5), 10 / (2 * 5))  # 1.0
    _close(token_mean(x, mask, num_tokens=20), 10 / 20)  # global token count under accumulation
    _close(aggregate(x, mask, "seq-mean-token-mean"), 3.0)
    _close(aggregate(x, mask, "constant", max_tokens=5), 1.0)
    with pytest.raises(ConfigError, match="unknown aggregation"):
        aggregate(x, mask, "mean")
    with pytest.raises(ConfigError, match="max_tokens"):
        aggregate(x, mask, "constant")
    with pytest.raises(BatchShapeError):
        token_mean(x, mask[:, :2])


def test_bad_config_and_shapes():
    r = torch.ones(2, 3)
    with pytest.raises(ConfigError, match="dual_clip"):
        ppo_clip_loss(r, r, dual_clip=1.0)
    with pytest.raises(ConfigError, match="clip_low"):
        ppo_clip_loss(r, r, clip_low=1.0)
    with pytest.raises(BatchShapeError):
        ppo_clip_loss(torch.ones(3, 1), r)
    with pytest.raises(BatchShapeError):
        token_ratio(torch.ones(2, 3), torch.ones(2, 2))
    with pytest.raises(ConfigError, match="value clip"):
        clipped_value_loss(r, r, r, clip=0.0)


def test_gradcheck_smooth_pieces():
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 0, 1], [1, 0, 0, 0]], dtype=F64)
    old = torch.randn(2, 4, dtype=F64)
    adv = torch.randn(2, 4, dtype=F64)
    # Stay inside the clip range (|log ratio| < 0.05) where the surrogate is smooth.
    logp = (old + 0.05 * torch.rand(2, 4, dtype=F64) - 0.025).requires_grad_(True)

    def pg(lp, ratio_fn, agg):
        ratio = ratio_fn(lp, old) if ratio_fn is token_ratio else ratio_fn(lp, old, mask)
        return agg(ppo_clip_loss(ratio, adv, 0.2, 0.28, 3.0).loss, mask)

    # gspo_token_ratio is left out on purpose: its stop-gradient makes the analytic gradient
    # differ from finite differences by design (its gradient is checked by hand above).
    for ratio_fn in (token_ratio, sequence_ratio):
        for agg in (token_mean, seq_mean_token_mean, seq_mean_token_sum):
            assert torch.autograd.gradcheck(lambda lp, f=ratio_fn, a=agg: pg(lp, f, a), (logp,))

    values = torch.randn(2, 4, dtype=F64, requires_grad=True)
    returns = torch.randn(2, 4, dtype=F64)
    assert torch.autograd.gradcheck(
        lambda v: token_mean(clipped_value_loss(v, v.detach() + 0.01, returns, clip=None).loss, mask), (values,)
    )
