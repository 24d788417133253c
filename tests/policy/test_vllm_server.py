"""VLLMServerPolicy: weight sync into the session's real vLLM server (dev mode, loopback).

The server is shared with other tests: every test that changes its weights restores them.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch

from agentrl.errors import CapabilityError, ConfigError
from agentrl.policy import (
    OpenAIPolicy,
    SamplingParams,
    TokenScorer,
    VLLMServerPolicy,
    WeightSync,
    load_policy,
    require_capability,
)

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def policy(vllm_server: Any) -> Iterator[VLLMServerPolicy]:
    pol = load_policy(f"openai:{vllm_server.url}", weight_sync="vllm-dev", max_retries=1,
                      timeout_s=60)  # fmt: skip
    assert isinstance(pol, VLLMServerPolicy)
    asyncio.run(pol.prepare())
    yield pol
    pol.close()


def _perturbed(model: Any, seed: int) -> Any:
    new = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in new.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return new


def _prompt(pol: OpenAIPolicy) -> list[int]:
    msgs = [{"role": "user", "content": "What is 17 + 25?"}]
    return list(pol.tokenizer.apply_chat_template(
        msgs, add_generation_prompt=True, tokenize=True, return_dict=False))  # fmt: skip


def _max_diff(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def test_capabilities_are_opt_in(policy: VLLMServerPolicy, vllm_server: Any) -> None:
    plain = load_policy(f"openai:{vllm_server.url}")
    assert type(plain) is OpenAIPolicy and not isinstance(plain, WeightSync | TokenScorer)
    assert isinstance(policy, WeightSync) and isinstance(policy, TokenScorer)
    require_capability(policy, WeightSync, "training")
    with pytest.raises(ConfigError, match="weight_sync must be None or 'vllm-dev'"):
        load_policy(f"openai:{vllm_server.url}", weight_sync="nccl")
    with pytest.raises(ConfigError, match="state dict does not match the checkpoint"):
        policy.update_weights({"model.embed_tokens.weight": torch.zeros(3)})


def test_push_weights_then_restore(
    policy: VLLMServerPolicy, tiny_hf_model: Any, reference_logprobs: Any
) -> None:
    # longer than a KV block (128 tokens on CPU): the server caches its prefix
    prompt = _prompt(policy) + policy.tokenizer.encode("The quick brown fox. " * 60)[:300]
    params = SamplingParams(max_tokens=16, seed=3)
    (before,) = asyncio.run(policy.generate(prompt, params))  # also fills the prefix cache
    assert before.weight_version == policy.weight_version == 0
    new = _perturbed(tiny_hf_model, seed=1)
    try:
        t0 = time.perf_counter()
        diff = policy.update_weights(new, atol=1e-4)
        took = time.perf_counter() - t0
        assert diff is not None and diff < 1e-4
        assert policy.weight_version == 1
        assert asyncio.run(policy.server_weight_version()) == "1"
        # same prompt again: its cached KV blocks of the old weights must not be reused
        (after,) = asyncio.run(policy.generate(prompt, params))
        assert after.weight_version == 1 and after.token_ids != before.token_ids
        assert _max_diff(reference_logprobs(prompt, after.token_ids, model=new),
                         after.logprobs) < 1e-4  # fmt: skip
        assert _max_diff(reference_logprobs(prompt, after.token_ids), after.logprobs) > 1e-2
        print(f"\nweight sync into the vLLM server (tiny model, verified): {took:.2f} s")
    finally:  # a state dict this time: the check builds its own copy of the model
        restored = policy.update_weights(tiny_hf_model.state_dict(), atol=1e-4)
    assert restored is not None and restored < 1e-4 and policy.weight_version == 2
    (again,) = asyncio.run(policy.generate(prompt, params))
    assert again.token_ids == before.token_ids and again.weight_version == 2
    assert _max_diff(again.logprobs, before.logprobs) < 1e-4


def test_requests_in_flight_keep_their_weight_version(
    policy: VLLMServerPolicy, tiny_hf_model: Any, reference_logprobs: Any
) -> None:
    """Completions started before an update finish on the old weights; later ones wait."""
    prompt = _prompt(policy)
    new = _perturbed(tiny_hf_model, seed=2)
    models = {policy.weight_version: tiny_hf_model, policy.weight_version + 1: new}

    async def run() -> list[Any]:
        params = SamplingParams(max_tokens=24, n=2, seed=5)
        early = [asyncio.create_task(policy.generate(prompt, params)) for _ in range(3)]
        await asyncio.sleep(0.05)
        sync = asyncio.create_task(policy.aupdate_weights(new, verify=False))
        while not policy._syncing:  # the update has begun: new requests must wait for it
            await asyncio.sleep(0.001)
        late = [asyncio.create_task(policy.generate(prompt, params)) for _ in range(2)]
        await sync
        return [g for gens in await asyncio.gather(*early, *late) for g in gens]

    try:
        gens = asyncio.run(run())
        versions = {g.weight_version for g in gens}
        assert versions == set(models), versions
        for g in gens:
            ref = reference_logprobs(prompt, g.token_ids, model=models[g.weight_version])
            assert _max_diff(ref, g.logprobs) < 1e-4
    finally:
        policy.update_weights(tiny_hf_model, atol=1e-4)


# ---------------------------------------------------------------- a server without dev mode
class _FakeNoDevModeServer(BaseHTTPRequestHandler):
    """A FAKE OpenAI-compatible server: /v1/models only; every other route is 404 (as vLLM
    without VLLM_SERVER_DEV_MODE answers /pause, /collective_rpc and /is_paused)."""

    model = ""

    def _reply(self) -> None:
        if self.path == "/v1/models":
            body, status = {"data": [{"id": self.model, "max_model_len": 4096}]}, 200
        else:
            body, status = {"detail": "Not Found"}, 404
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _reply

    def log_message(self, *args: Any) -> None:
        return None


def test_server_without_dev_mode_gives_a_clear_error(
    tiny_model_path: Path, tiny_hf_model: Any
) -> None:
    _FakeNoDevModeServer.model = str(tiny_model_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeNoDevModeServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        pol = load_policy(f"openai:{url}", weight_sync="vllm-dev", max_retries=0)
        with pytest.raises(CapabilityError, match="no /is_paused route.*VLLM_SERVER_DEV_MODE=1"):
            asyncio.run(pol.prepare())
        with pytest.raises(CapabilityError, match="cannot take weight updates"):
            pol.update_weights(tiny_hf_model)
        assert pol.weight_version == 0
        pol.close()
    finally:
        server.shutdown()
        server.server_close()
