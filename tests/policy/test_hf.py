"""HFPolicy: the same outputs contract as vLLM, checked against an fp32 forward pass."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from agentrl.errors import PromptTooLongError
from agentrl.policy import HFPolicy, SamplingParams


@pytest.fixture(scope="module")
def hf_policy(tiny_model_path: Path) -> HFPolicy:
    return HFPolicy(tiny_model_path)


@pytest.fixture(scope="module")
def prompt(hf_policy: HFPolicy) -> list[int]:
    msgs = [{"role": "user", "content": "What is 17 + 25?"}]
    return list(
        hf_policy.tokenizer.apply_chat_template(
            msgs, add_generation_prompt=True, tokenize=True, return_dict=False
        )
    )


def _gen(pol: HFPolicy, prompt: list[int], **kw: Any) -> list[Any]:
    return asyncio.run(pol.generate(prompt, SamplingParams(**kw)))


def test_logprobs_match_a_forward_pass(
    hf_policy: HFPolicy, prompt: list[int], reference_logprobs: Any
) -> None:
    gens = _gen(hf_policy, prompt, max_tokens=24, n=2, seed=0)
    assert len(gens) == 2 and gens[0].token_ids != gens[1].token_ids
    for g in gens:
        assert len(g.token_ids) == len(g.logprobs) > 0
        ref = reference_logprobs(prompt, g.token_ids)
        assert max(abs(a - b) for a, b in zip(ref, g.logprobs, strict=True)) < 1e-4
        assert g.text == hf_policy.tokenizer.decode(g.token_ids, skip_special_tokens=True)
        if g.finish_reason == "length":
            assert len(g.token_ids) == 24
        else:
            assert g.token_ids[-1] == hf_policy.tokenizer.eos_token_id


def test_greedy_is_argmax(hf_policy: HFPolicy, prompt: list[int], tiny_hf_model: Any) -> None:
    import torch

    g = _gen(hf_policy, prompt, max_tokens=8, temperature=0.0)[0]
    with torch.no_grad():
        logits = tiny_hf_model(torch.tensor([prompt + g.token_ids])).logits[0, len(prompt) - 1 : -1]
    assert logits.argmax(-1).tolist() == g.token_ids


def test_seed_reproducible(hf_policy: HFPolicy, prompt: list[int]) -> None:
    a = _gen(hf_policy, prompt, max_tokens=16, seed=11)[0].token_ids
    b = _gen(hf_policy, prompt, max_tokens=16, seed=11)[0].token_ids
    c = _gen(hf_policy, prompt, max_tokens=16, seed=12)[0].token_ids
    assert a == b and a != c


def test_stop_string_cuts_after_the_completing_token(
    hf_policy: HFPolicy, prompt: list[int]
) -> None:
    tok = hf_policy.tokenizer
    full = _gen(hf_policy, prompt, max_tokens=20, seed=5)[0]
    stop = next(
        s for s in (tok.decode([t]) for t in full.token_ids[3:]) if s.strip() and "\ufffd" not in s
    )
    # expected: the shortest prefix of the unstopped sample whose text contains the stop string
    k = next(
        k for k in range(1, 21) if stop in tok.decode(full.token_ids[:k], skip_special_tokens=True)
    )
    cut = _gen(hf_policy, prompt, max_tokens=20, seed=5, stop=(stop,))[0]
    assert cut.token_ids == full.token_ids[:k] and cut.finish_reason == "stop"
    assert cut.text.endswith(stop) and cut.metadata["stop_reason"] == stop


def test_prompt_too_long(hf_policy: HFPolicy) -> None:
    with pytest.raises(PromptTooLongError, match="4096"):
        _gen(hf_policy, [5] * 4096)


def test_generation_does_not_block_the_event_loop(hf_policy: HFPolicy, prompt: list[int]) -> None:
    async def main() -> tuple[list[float], float, float]:
        ticks: list[float] = []

        async def ticker() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.002)

        task = asyncio.create_task(ticker())
        start = time.monotonic()
        await hf_policy.generate(prompt, SamplingParams(max_tokens=150, seed=1))
        end = time.monotonic()
        task.cancel()
        return ticks, start, end

    ticks, start, end = asyncio.run(main())
    assert end - start > 0.05
    inside = [t for t in ticks if start + 0.01 < t < end - 0.01]
    assert len(inside) >= 5  # the loop kept running while the model generated
