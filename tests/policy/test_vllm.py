"""VLLMPolicy on the real CPU build of vLLM: one engine for the session (tests/conftest.py).

Logprobs are checked against an independent transformers fp32 forward pass. Tests that
change the engine's weights restore the original ones before they return.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from typing import Any

import pytest

from agentrl.errors import ConfigError, InvalidPromptError, PolicyError, PromptTooLongError
from agentrl.policy import SamplingParams, VLLMPolicy

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def prompt(vllm_policy: VLLMPolicy) -> list[int]:
    msgs = [{"role": "user", "content": "What is 17 + 25?"}]
    return list(
        vllm_policy.tokenizer.apply_chat_template(
            msgs, add_generation_prompt=True, tokenize=True, return_dict=False
        )
    )


def _gen(pol: VLLMPolicy, prompt: list[int], **kw: Any) -> list[Any]:
    return asyncio.run(pol.generate(prompt, SamplingParams(**kw)))


def _maxdiff(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def test_token_ids_and_logprobs_match_a_forward_pass(
    vllm_policy: VLLMPolicy, prompt: list[int], reference_logprobs: Any
) -> None:
    gens = _gen(vllm_policy, prompt, max_tokens=24, n=3, seed=0)
    assert (
        len(gens) == 3 and len({tuple(g.token_ids) for g in gens}) == 3
    )  # n samples, all different
    for g in gens:
        assert len(g.token_ids) == len(g.logprobs) > 0
        assert _maxdiff(reference_logprobs(prompt, g.token_ids), g.logprobs) < 1e-4
        assert g.text == vllm_policy.tokenizer.decode(g.token_ids, skip_special_tokens=True)
        assert g.finish_reason in ("stop", "length")
        assert (
            len(g.token_ids) == 24
            if g.finish_reason == "length"
            else g.token_ids[-1] == vllm_policy.tokenizer.eos_token_id
        )


def test_greedy_is_argmax(vllm_policy: VLLMPolicy, prompt: list[int], tiny_hf_model: Any) -> None:
    import torch

    g = _gen(vllm_policy, prompt, max_tokens=8, temperature=0.0)[0]
    with torch.no_grad():
        logits = tiny_hf_model(torch.tensor([prompt + g.token_ids])).logits[0, len(prompt) - 1 : -1]
    assert logits.argmax(-1).tolist() == g.token_ids


def test_seed_reproducible_and_batching_invariant(
    vllm_policy: VLLMPolicy, prompt: list[int]
) -> None:
    alone = [_gen(vllm_policy, prompt, max_tokens=16, seed=s)[0].token_ids for s in range(6)]
    assert len({tuple(a) for a in alone}) == 6  # different seeds, different samples

    async def together() -> list[Any]:
        # many asyncio tasks at once: batched by the engine, each gets its own result
        return await asyncio.gather(
            *[vllm_policy.generate(prompt, SamplingParams(max_tokens=16, seed=s)) for s in range(6)]
        )

    assert [r[0].token_ids for r in asyncio.run(together())] == alone


def test_stop_string_cuts_after_the_completing_token(
    vllm_policy: VLLMPolicy, prompt: list[int]
) -> None:
    tok = vllm_policy.tokenizer
    full = _gen(vllm_policy, prompt, max_tokens=20, seed=5)[0]
    stop = next(
        s for s in (tok.decode([t]) for t in full.token_ids[3:]) if s.strip() and "\ufffd" not in s
    )
    # expected: the shortest prefix of the unstopped sample whose text contains the stop string
    k = next(
        k for k in range(1, 21) if stop in tok.decode(full.token_ids[:k], skip_special_tokens=True)
    )
    cut = _gen(vllm_policy, prompt, max_tokens=20, seed=5, stop=(stop,))[0]
    assert cut.token_ids == full.token_ids[:k] and cut.logprobs == pytest.approx(
        full.logprobs[:k], abs=1e-6
    )
    assert (
        cut.finish_reason == "stop"
        and cut.text.endswith(stop)
        and cut.metadata["stop_reason"] == stop
    )


def test_context_limits(vllm_policy: VLLMPolicy) -> None:
    assert vllm_policy.max_model_len == 4096
    near = _gen(vllm_policy, [7] * 4090, max_tokens=20, seed=0)[0]
    assert len(near.token_ids) == 6 and near.finish_reason == "length"  # 4096 - 4090 tokens of room
    with pytest.raises(PromptTooLongError, match="4096 tokens but the context window is 4096"):
        _gen(vllm_policy, [7] * 4096)
    with pytest.raises(InvalidPromptError, match="outside the vocabulary"):
        _gen(vllm_policy, [7, 10_000])


@pytest.fixture
def restore_weights(vllm_policy: VLLMPolicy, tiny_hf_model: Any) -> Iterator[None]:
    yield
    vllm_policy.update_weights(tiny_hf_model)  # back to the checkpoint for later tests


def _perturbed(model: Any, seed: int) -> Any:
    import torch

    new = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in new.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return new


def test_weight_update_in_place(
    vllm_policy: VLLMPolicy,
    prompt: list[int],
    tiny_hf_model: Any,
    reference_logprobs: Any,
    restore_weights: None,
) -> None:
    new = _perturbed(tiny_hf_model, seed=1)
    checked = vllm_policy.update_weights(new)
    assert checked is not None and checked < 1e-4
    g = _gen(vllm_policy, prompt, max_tokens=16, seed=3)[0]
    assert _maxdiff(reference_logprobs(prompt, g.token_ids, model=new), g.logprobs) < 1e-4
    assert (
        _maxdiff(reference_logprobs(prompt, g.token_ids), g.logprobs) > 1e-2
    )  # not the old weights
    # a state dict without the tied lm_head works too (the policy adds it)
    state = {k: v for k, v in tiny_hf_model.state_dict().items() if k != "lm_head.weight"}
    assert vllm_policy.update_weights(state) < 1e-4
    g = _gen(vllm_policy, prompt, max_tokens=16, seed=3)[0]
    assert _maxdiff(reference_logprobs(prompt, g.token_ids), g.logprobs) < 1e-4


def test_weight_update_drops_prefix_cache_of_old_weights(
    vllm_policy: VLLMPolicy, tiny_hf_model: Any, reference_logprobs: Any, restore_weights: None
) -> None:
    """A prompt longer than a KV block (128 tokens on CPU) leaves cached blocks; after a sync
    they must not be reused (before the fix: logprobs off by ~1 on the new weights)."""
    long = vllm_policy.tokenizer.encode("The quick brown fox jumps over the lazy dog. " * 40)[:400]
    _gen(vllm_policy, long, max_tokens=4, seed=3)  # fills the prefix cache
    new = _perturbed(tiny_hf_model, seed=5)
    vllm_policy.update_weights(new)
    g = _gen(vllm_policy, long, max_tokens=8, seed=3)[0]
    assert _maxdiff(reference_logprobs(long, g.token_ids, model=new), g.logprobs) < 1e-4


def test_weight_update_rejects_foreign_names(
    vllm_policy: VLLMPolicy, prompt: list[int], tiny_hf_model: Any
) -> None:
    state = {"module." + k: v for k, v in tiny_hf_model.state_dict().items()}
    with pytest.raises(ConfigError, match="unexpected.*module.model"):
        vllm_policy.update_weights(state)
    state = dict(tiny_hf_model.state_dict())
    state["model.norm.weight"] = state["model.norm.weight"][:-1]
    with pytest.raises(
        ConfigError, match=r"wrong shape, e.g. model.norm.weight: \(63,\) != checkpoint \(64,\)"
    ):
        vllm_policy.update_weights(state)
    version = vllm_policy.weight_version
    with pytest.raises(ConfigError, match="torch.nn.Module or a state dict"):
        vllm_policy.update_weights([1, 2])
    assert _gen(vllm_policy, prompt, max_tokens=4)[0].token_ids  # engine unharmed
    assert vllm_policy.weight_version == version  # refused updates are not versions


def test_weight_check_catches_a_mismatch(
    vllm_policy: VLLMPolicy, tiny_hf_model: Any, restore_weights: None
) -> None:
    import torch

    other = _perturbed(tiny_hf_model, seed=2).state_dict()

    class Mislabelled(torch.nn.Module):
        """Sends one set of weights while its forward computes with another."""

        def __init__(self) -> None:
            super().__init__()
            self.real = tiny_hf_model

        def state_dict(self, *args: Any, **kwargs: Any) -> Any:
            return other

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            return self.real(*args, **kwargs)

    with pytest.raises(PolicyError, match="weight sync check failed"):
        vllm_policy.update_weights(Mislabelled())


def test_weight_update_waits_for_requests_in_flight(
    vllm_policy: VLLMPolicy,
    prompt: list[int],
    tiny_hf_model: Any,
    reference_logprobs: Any,
    restore_weights: None,
) -> None:
    new = _perturbed(tiny_hf_model, seed=4)
    version = vllm_policy.weight_version

    async def main() -> tuple[list[Any], list[Any]]:
        params = SamplingParams(max_tokens=400, seed=9)
        old = [asyncio.create_task(vllm_policy.generate(prompt, params)) for _ in range(3)]
        await asyncio.sleep(0.05)  # requests are running
        await vllm_policy.aupdate_weights(new)
        assert all(t.done() for t in old)  # the sync waited for them
        return await asyncio.gather(*old), await vllm_policy.generate(prompt, params)

    before, after = asyncio.run(main())
    for (g,) in before:  # finished entirely on the old weights
        assert _maxdiff(reference_logprobs(prompt, g.token_ids), g.logprobs) < 1e-4
        assert g.weight_version == version
    # Each generation records the version it was sampled with.
    assert after[0].weight_version == version + 1 == vllm_policy.weight_version
    assert (
        _maxdiff(reference_logprobs(prompt, after[0].token_ids, model=new), after[0].logprobs)
        < 1e-4
    )


def test_text_is_the_decoding_of_the_token_ids(vllm_policy: VLLMPolicy, prompt: list[int]) -> None:
    tok = vllm_policy.tokenizer
    gens = _gen(vllm_policy, prompt, max_tokens=64, n=64, seed=21)
    added = {
        tok.convert_tokens_to_ids(t)
        for t in ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
    }
    assert any(added & set(g.token_ids) for g in gens)  # the check below covers added tokens too
    for g in gens:
        assert g.text == tok.decode(g.token_ids, skip_special_tokens=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_model_len": 100_000}, "greater than the derived max_model_len"),
        ({"engine_kwargs": {"no_such_arg": 1}}, "no_such_arg"),
    ],
)
def test_bad_engine_settings_are_config_errors(
    tiny_model_path: Any, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        VLLMPolicy(tiny_model_path, **kwargs)  # rejected before any engine process starts
