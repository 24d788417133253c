"""token_logprobs: hand-worked values on a bigram model, padding, temperature, entropy,
chunking, gradients, and the real tiny model against an independent log_softmax reference."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from agentrl.errors import BatchShapeError, ConfigError
from agentrl.models import logprobs as logprobs_module
from agentrl.models.logprobs import gather_logprobs, token_logprobs

LN2, LN3 = math.log(2), math.log(3)
# Next-token logits given the previous token (a bigram model), chosen for easy softmaxes:
# after 0: probs [1/4, 1/2, 1/4]; after 1: [1/3, 1/3, 1/3]; after 2: [3/5, 1/5, 1/5].
TABLE = [[0.0, LN2, 0.0], [0.0, 0.0, 0.0], [LN3, 0.0, 0.0]]


class Bigram(torch.nn.Module):
    """logits[b, t] = TABLE[ids[b, t]]; records the position ids it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(torch.tensor(TABLE))
        self.seen: dict[str, Any] = {}

    def forward(self, input_ids: Any, attention_mask: Any = None, position_ids: Any = None,
                use_cache: Any = None) -> Any:
        self.seen = {"position_ids": position_ids, "attention_mask": attention_mask}
        return SimpleNamespace(logits=self.table[input_ids])


def test_hand_worked_values_and_alignment() -> None:
    model = Bigram()
    ids = torch.tensor([[0, 1, 2, 0]])
    logp = token_logprobs(model, ids)
    # logp[t] = log p(ids[t] | ids[t-1]); logp[0] = 0.
    expected = [0.0, math.log(1 / 2), math.log(1 / 3), math.log(3 / 5)]
    assert logp.dtype == torch.float32 and logp.shape == (1, 4)
    assert logp[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_padding_left_and_right_and_position_ids() -> None:
    model = Bigram()
    ids = torch.tensor([[1, 2, 0, 0], [0, 0, 1, 2], [0, 1, 2, 0]])
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1]])
    logp = token_logprobs(model, ids, mask)
    third = math.log(1 / 3)
    assert logp[0].tolist() == pytest.approx([0.0, third, 0.0, 0.0], abs=1e-6)  # right padded
    assert logp[1].tolist() == pytest.approx([0.0, 0.0, 0.0, third], abs=1e-6)  # left padded
    # Position ids count real tokens only: left padding does not shift them.
    assert model.seen["position_ids"].tolist() == [[0, 1, 1, 1], [0, 0, 0, 1], [0, 1, 2, 3]]


def test_temperature_and_entropy() -> None:
    model = Bigram()
    ids = torch.tensor([[0, 1, 2, 0]])
    logp, ent = token_logprobs(model, ids, temperature=2.0, return_entropy=True)
    # After 0 at T=2: logits [0, ln2/2, 0] -> probs proportional to [1, sqrt 2, 1].
    r2 = math.sqrt(2)
    p_after_2 = [3 ** 0.5 / (3 ** 0.5 + 2), 1 / (3 ** 0.5 + 2)]  # [sqrt 3, 1, 1] normalized
    assert logp[0, 1].item() == pytest.approx(math.log(r2 / (2 + r2)), abs=1e-6)
    assert logp[0, 2].item() == pytest.approx(math.log(1 / 3), abs=1e-6)
    assert logp[0, 3].item() == pytest.approx(math.log(p_after_2[0]), abs=1e-6)
    # Entropy at t is that of the distribution ids[t] was drawn from; 0 at t = 0.
    q = [1 / (2 + r2), r2 / (2 + r2), 1 / (2 + r2)]
    h0 = -sum(x * math.log(x) for x in q)
    h2 = -(p_after_2[0] * math.log(p_after_2[0]) + 2 * p_after_2[1] * math.log(p_after_2[1]))
    assert ent[0].tolist() == pytest.approx([0.0, h0, math.log(3), h2], abs=1e-6)
    # T = 1 entropies from the hand-made table.
    _, ent1 = token_logprobs(model, ids, return_entropy=True)
    h_row0 = 1.5 * LN2
    h_row2 = -(0.6 * math.log(0.6) + 0.4 * math.log(0.2))
    assert ent1[0].tolist() == pytest.approx([0.0, h_row0, LN3, h_row2], abs=1e-6)


def test_gradients_flow_to_the_model() -> None:
    model = Bigram()
    logp = token_logprobs(model, torch.tensor([[0, 1]]))
    logp.sum().backward()
    # d/dz log softmax(z)[1] = onehot(1) - softmax(z), for the row after token 0.
    assert model.table.grad[0].tolist() == pytest.approx([-0.25, 0.5, -0.25], abs=1e-6)
    assert model.table.grad[1:].abs().sum().item() == 0.0


def test_chunked_equals_unchunked(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 37, 11, generator=gen, dtype=torch.float64).to(torch.bfloat16)
    ids = torch.randint(0, 11, (2, 37), generator=gen)
    full = torch.log_softmax(logits.float(), -1).gather(-1, ids[..., None])[..., 0]
    monkeypatch.setattr(logprobs_module, "CHUNK", 5)
    chunked, ent = gather_logprobs(logits, ids, return_entropy=True)
    probs = torch.softmax(logits.float(), -1)
    assert torch.allclose(chunked, full, atol=1e-6)
    assert torch.allclose(ent, -(probs * probs.log()).sum(-1), atol=1e-5)


def test_bad_inputs() -> None:
    model = Bigram()
    with pytest.raises(BatchShapeError, match=r"input_ids must be \[B, L\]"):
        token_logprobs(model, torch.tensor([0, 1]))
    with pytest.raises(BatchShapeError, match="does not match"):
        token_logprobs(model, torch.tensor([[0, 1]]), torch.tensor([[1, 1, 1]]))
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        token_logprobs(model, torch.tensor([[0, 1]]), temperature=0.0)
    with pytest.raises(BatchShapeError, match="do not fit"):
        gather_logprobs(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
    # One token: nothing to predict, all zeros.
    assert token_logprobs(model, torch.tensor([[2]])).tolist() == [[0.0]]


def test_tiny_model_matches_reference_with_padding(tiny_hf_model: Any, reference_logprobs: Any
                                                   ) -> None:
    a, b = [5, 17, 42, 99, 7, 3], [11, 12, 13]
    pad = 0
    ids = torch.tensor([a, [pad] * 3 + b, b + [pad] * 3])
    mask = torch.tensor([[1] * 6, [0] * 3 + [1] * 3, [1] * 3 + [0] * 3])
    with torch.no_grad():
        logp = token_logprobs(tiny_hf_model, ids, mask)
    ref_a = reference_logprobs(a[:1], a[1:])
    ref_b = reference_logprobs(b[:1], b[1:])
    assert logp[0, 1:].tolist() == pytest.approx(ref_a, abs=1e-5)
    assert logp[1, 4:].tolist() == pytest.approx(ref_b, abs=1e-4)  # left padded
    assert logp[2, 1:3].tolist() == pytest.approx(ref_b, abs=1e-5)  # right padded
    assert logp[1, :4].abs().sum() == 0 and logp[2, 3:].abs().sum() == 0
    assert torch.isfinite(logp).all()
