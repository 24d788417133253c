"""Capability protocols (WeightSync, TokenScorer, ChatSampler), require_capability's errors,
and weight versions on the HF and fake backends."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from agentrl.errors import CapabilityError, ConfigError, PolicyError
from agentrl.policy import (
    ChatSampler,
    FakePolicy,
    HFPolicy,
    OpenAIPolicy,
    SamplingParams,
    TokenScorer,
    WeightSync,
    require_capability,
)
from agentrl.policy.base import Generation, Policy


class Minimal(Policy):
    async def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> list[Generation]:
        return []


@pytest.fixture(scope="module")
def hf_policy(tiny_model_path: Path) -> HFPolicy:
    return HFPolicy(tiny_model_path)


@pytest.fixture(scope="module")
def tok(tiny_model_path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


def test_which_backend_has_which_capability(hf_policy: HFPolicy, tok: Any) -> None:
    fake = FakePolicy(tok, ["hi"])
    remote = OpenAIPolicy("http://127.0.0.1:9", model="m")  # no connection is made here
    assert isinstance(hf_policy, WeightSync) and isinstance(hf_policy, TokenScorer)
    assert not isinstance(hf_policy, ChatSampler)
    assert isinstance(fake, WeightSync) and not isinstance(fake, TokenScorer)
    assert isinstance(remote, ChatSampler) and not isinstance(remote, WeightSync)
    assert not isinstance(Minimal(), WeightSync | TokenScorer | ChatSampler)
    require_capability(hf_policy, WeightSync, "training")  # no error


def test_missing_capability_errors_name_the_backends_that_have_it(tok: Any) -> None:
    remote = OpenAIPolicy("http://127.0.0.1:9", model="m")
    with pytest.raises(CapabilityError) as err:
        require_capability(remote, WeightSync, "on-policy training")
    assert str(err.value) == (
        "policy OpenAIPolicy cannot take weight updates (needed for on-policy training); "
        "use vllm: or hf:, or openai: with weight_sync='vllm-dev' (a vLLM server in dev mode) "
        "(or FakePolicy in tests)"
    )
    assert isinstance(err.value, PolicyError)
    with pytest.raises(CapabilityError, match=r"FakePolicy cannot score tokens \(prompt_logprobs\); "
                                              "use vllm: or hf:"):
        require_capability(FakePolicy(tok, ["x"]), TokenScorer)
    with pytest.raises(CapabilityError, match="Minimal cannot sample from chat messages.*openai:"):
        require_capability(Minimal(), ChatSampler, "a chat-only evaluation")


def test_fake_policy_weight_versions(tok: Any) -> None:
    fake = FakePolicy(tok, ["a"], cycle=True)
    params = SamplingParams(max_tokens=8)
    assert fake.weight_version == 0
    (g0,) = asyncio.run(fake.generate([1, 2], params))
    assert fake.update_weights({"w": torch.zeros(1)}) == 0.0
    (g1,) = asyncio.run(fake.generate([1, 2], params))
    assert asyncio.run(fake.aupdate_weights({"w": torch.ones(1)}, verify=False)) is None
    (g2,) = asyncio.run(fake.generate([1, 2], params))
    assert [g0.weight_version, g1.weight_version, g2.weight_version] == [0, 1, 2]
    assert fake.weights["w"].item() == 1.0
    with pytest.raises(ConfigError, match="weights is None"):
        fake.update_weights(None)
    assert fake.weight_version == 2


def test_hf_update_weights_changes_outputs_and_versions(hf_policy: HFPolicy,
                                                        tiny_hf_model: Any) -> None:
    import copy

    ids = hf_policy.tokenizer.encode("The weather is fine today.", add_special_tokens=False)
    before = asyncio.run(hf_policy.prompt_logprobs(ids))
    assert len(before) == len(ids) - 1
    start = hf_policy.weight_version
    (g,) = asyncio.run(hf_policy.generate(ids, SamplingParams(max_tokens=4, seed=0)))
    assert g.weight_version == start
    new = copy.deepcopy(tiny_hf_model)
    with torch.no_grad():
        new.lm_head.weight.mul_(1.5)
    try:
        assert hf_policy.update_weights(new) == 0.0
        assert hf_policy.weight_version == start + 1
        after = asyncio.run(hf_policy.prompt_logprobs(ids))
        # The policy now scores like the new module.
        from agentrl.models.logprobs import token_logprobs

        with torch.no_grad():
            ref = token_logprobs(new, torch.tensor([ids]))[0, 1:].tolist()
        assert after == pytest.approx(ref, abs=1e-5) and after != pytest.approx(before, abs=1e-3)
        (g,) = asyncio.run(hf_policy.generate(ids, SamplingParams(max_tokens=4, seed=0)))
        assert g.weight_version == start + 1
        # Bad state dicts are refused before anything changes.
        state = {k: v for k, v in new.state_dict().items() if "layers.0." not in k}
        with pytest.raises(ConfigError, match="missing"):
            hf_policy.update_weights(state)
        with pytest.raises(ConfigError, match="state dict"):
            hf_policy.update_weights([1, 2])
        assert hf_policy.weight_version == start + 1
    finally:
        asyncio.run(hf_policy.aupdate_weights(tiny_hf_model))
    assert hf_policy.weight_version == start + 2
    assert asyncio.run(hf_policy.prompt_logprobs(ids)) == pytest.approx(before, abs=1e-6)
