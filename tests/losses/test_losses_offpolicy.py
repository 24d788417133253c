"""Truncated importance sampling for the sampler/learner mismatch."""

import math

import pytest
import torch

from agentrl.errors import BatchShapeError, ConfigError
from agentrl.losses import sequence_is_correction, token_is_correction

F64 = torch.float64
LN = math.log


def _case():
    # learner - sampler log ratios: [ln 3, ln 0.5, ln 1.2, (masked) ln 10]
    sampler = torch.tensor([[-1.0, -2.0, -0.5, -4.0]], dtype=F64)
    logp = sampler + torch.tensor([[LN(3), LN(0.5), LN(1.2), LN(10)]], dtype=F64)
    mask = torch.tensor([[1, 1, 1, 0]], dtype=F64)
    return logp, sampler, mask


def test_token_tis_truncates_at_cap():
    logp, sampler, mask = _case()
    out = token_is_correction(logp, sampler, mask, cap=2.0)
    # ratios 3, 0.5, 1.2 -> min(r, 2) = 2, 0.5, 1.2; the masked token gets 0
    torch.testing.assert_close(out.weights, torch.tensor([[2.0, 0.5, 1.2, 0.0]], dtype=F64))
    assert out.keep.tolist() == [[1, 1, 1, 0]]
    s = out.stats
    assert s["ratio_mean"] == pytest.approx((3 + 0.5 + 1.2) / 3)
    assert (s["ratio_min"], s["ratio_max"]) == pytest.approx((0.5, 3.0))
    assert s["truncated_frac"] == pytest.approx(1 / 3)
    assert s["masked_frac"] == 0.0
    # k3 = r - 1 - ln r: (3 - 1 - ln 3) + (0.5 - 1 - ln 0.5) + (1.2 - 1 - ln 1.2), over 3 tokens
    k3 = ((2 - LN(3)) + (-0.5 - LN(0.5)) + (0.2 - LN(1.2))) / 3
    assert s["mismatch_kl"] == pytest.approx(k3)


def test_token_tis_masks_outside_band():
    logp, sampler, mask = _case()
    out = token_is_correction(logp, sampler, mask, cap=2.0, band=(0.6, 2.5))
    # 3 > 2.5 and 0.5 < 0.6 fall outside the band -> dropped; 1.2 stays
    torch.testing.assert_close(out.weights, torch.tensor([[0.0, 0.0, 1.2, 0.0]], dtype=F64))
    assert out.keep.tolist() == [[0, 0, 1, 0]]
    assert out.stats["masked_frac"] == pytest.approx(2 / 3)
    assert out.stats["truncated_frac"] == 0.0  # the only ratio above the cap was masked instead
    no_cap = token_is_correction(logp, sampler, mask, cap=None)
    torch.testing.assert_close(no_cap.weights, torch.tensor([[3.0, 0.5, 1.2, 0.0]], dtype=F64))


def test_sequence_tis_by_hand():
    sampler = torch.zeros(3, 3, dtype=F64)
    logp = torch.tensor([[LN(2), LN(1.5), 5.0], [LN(0.5), 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=F64)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=F64)
    out = sequence_is_correction(logp, sampler, mask, cap=2.0, band=(0.6, 4.0))
    # row 0: product 2 * 1.5 = 3 (the masked token ignored) -> inside band, capped at 2 on both tokens
    # row 1: 0.5 < 0.6 -> the whole sequence is masked; row 2: no model tokens
    torch.testing.assert_close(
        out.weights, torch.tensor([[2.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=F64)
    )
    assert out.keep.tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 0]]
    # statistics over the two sequences that have model tokens: ratios 3 and 0.5
    assert out.stats["ratio_mean"] == pytest.approx(1.75)
    assert out.stats["truncated_frac"] == pytest.approx(0.5)
    assert out.stats["masked_frac"] == pytest.approx(0.5)


def test_is_correction_is_detached_and_validates():
    logp, sampler, mask = _case()
    out = token_is_correction(logp.clone().requires_grad_(True), sampler, mask)
    assert not out.weights.requires_grad
    with pytest.raises(ConfigError, match="cap"):
        token_is_correction(logp, sampler, mask, cap=0.0)
    with pytest.raises(ConfigError, match="band"):
        sequence_is_correction(logp, sampler, mask, band=(2.0, 1.0))
    with pytest.raises(BatchShapeError):
        token_is_correction(logp, sampler[:, :2], mask)
    empty = token_is_correction(logp, sampler, torch.zeros_like(mask))
    assert math.isnan(empty.stats["ratio_mean"]) and empty.weights.abs().sum() == 0
