"""OpenAIPolicy against a real vLLM OpenAI-compatible server on loopback (one per session)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentrl.errors import PolicyServerError, PromptTooLongError
from agentrl.policy import OpenAIPolicy, SamplingParams, load_policy

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def policy(vllm_server: Any) -> OpenAIPolicy:
    pol = load_policy(f"openai:{vllm_server.url}/v1", max_retries=1, timeout_s=60)
    assert isinstance(pol, OpenAIPolicy)
    return pol


def _prompt(pol: OpenAIPolicy) -> list[int]:
    msgs = [{"role": "user", "content": "What is 17 + 25?"}]
    return list(
        pol.tokenizer.apply_chat_template(
            msgs, add_generation_prompt=True, tokenize=True, return_dict=False
        )
    )


def test_token_id_completions_match_a_forward_pass(
    policy: OpenAIPolicy, vllm_server: Any, reference_logprobs: Any
) -> None:
    asyncio.run(
        policy.generate([1, 2], SamplingParams(max_tokens=1))
    )  # learns model, context, tokenizer
    assert policy.model == vllm_server.model and policy.max_model_len == 4096
    assert policy.tokenizer is not None  # the served name is the model folder
    prompt = _prompt(policy)
    gens = asyncio.run(policy.generate(prompt, SamplingParams(max_tokens=20, n=2, seed=4)))
    assert len(gens) == 2 and gens[0].token_ids != gens[1].token_ids
    for g in gens:
        ref = reference_logprobs(prompt, g.token_ids)
        assert max(abs(a - b) for a, b in zip(ref, g.logprobs, strict=True)) < 1e-4
        assert g.text == policy.tokenizer.decode(g.token_ids, skip_special_tokens=True)
    again = asyncio.run(policy.generate(prompt, SamplingParams(max_tokens=20, n=2, seed=4)))
    assert [g.token_ids for g in again] == [g.token_ids for g in gens]  # seeded


def test_chat_fallback(policy: OpenAIPolicy, reference_logprobs: Any) -> None:
    msgs = [{"role": "user", "content": "What is 17 + 25?"}]
    (g,) = asyncio.run(policy.chat(msgs, SamplingParams(max_tokens=12, seed=1)))
    assert len(g.logprobs) == len(g.token_ids) > 0
    # the server rendered the same template: logprobs agree with a forward pass on our render
    ref = reference_logprobs(_prompt(policy), g.token_ids)
    assert max(abs(a - b) for a, b in zip(ref, g.logprobs, strict=True)) < 1e-4
    assert g.text == policy.tokenizer.decode(g.token_ids, skip_special_tokens=True)


def test_too_long_and_bad_model(policy: OpenAIPolicy, vllm_server: Any) -> None:
    with pytest.raises(PromptTooLongError):
        asyncio.run(policy.generate([5] * 4096, SamplingParams()))
    wrong = OpenAIPolicy(vllm_server.url, model="no-such-model", max_retries=0)
    with pytest.raises(PolicyServerError, match="HTTP 404|does not exist"):
        asyncio.run(wrong.generate([1, 2], SamplingParams(max_tokens=2)))
