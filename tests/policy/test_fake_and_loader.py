"""FakePolicy (scripted, for tests of other parts), prompt checks, and the load_policy factory."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from agentrl.errors import (
    ConfigError,
    InvalidPromptError,
    PolicyError,
    PolicyNotFoundError,
    PromptTooLongError,
)
from agentrl.policy import FakePolicy, OpenAIPolicy, SamplingParams, load_policy
from agentrl.policy._common import check_prompt, room_for
from agentrl.policy.fake import FAKE_LOGPROB


@pytest.fixture(scope="module")
def tok(tiny_model_path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


def _gen(pol: FakePolicy, params: SamplingParams, prompt: list[int] | None = None) -> Any:
    return asyncio.run(pol.generate(prompt or [1, 2, 3], params))


def test_fake_replies_in_order_with_eos_and_fake_logprobs(tok: Any) -> None:
    pol = FakePolicy(tok, ["Hello there", "bye"])
    first = _gen(pol, SamplingParams())[0]
    assert first.token_ids == tok.encode("Hello there") + [tok.eos_token_id]
    assert first.text == "Hello there" and first.finish_reason == "stop"
    assert first.logprobs == [FAKE_LOGPROB] * len(first.token_ids)
    assert _gen(pol, SamplingParams())[0].text == "bye"
    with pytest.raises(PolicyError, match="ran out of its 2 scripted replies"):
        _gen(pol, SamplingParams())
    assert pol.calls == [[1, 2, 3]] * 3


def test_fake_cycle_n_and_callable(tok: Any) -> None:
    assert [g.text for g in _gen(FakePolicy(tok, ["a", "b"], cycle=True), SamplingParams(n=3))] == [
        "a",
        "b",
        "a",
    ]
    echo = FakePolicy(tok, lambda prompt: f"you said {prompt[-5:]}")
    prompt = tok.encode("hello")
    assert _gen(echo, SamplingParams(), prompt)[0].text == "you said hello"


def test_fake_max_tokens_and_stop(tok: Any) -> None:
    pol = FakePolicy(tok, ["one two three four"], cycle=True)
    cut = _gen(pol, SamplingParams(max_tokens=2))[0]
    assert cut.token_ids == tok.encode("one two three four")[:2] and cut.finish_reason == "length"
    stopped = _gen(pol, SamplingParams(stop=("two",)))[0]
    assert stopped.text.endswith("two") and stopped.text.startswith("one")
    assert tok.eos_token_id not in stopped.token_ids and stopped.finish_reason == "stop"
    assert stopped.metadata["stop_reason"] == "two"


def test_fake_validates(tok: Any) -> None:
    with pytest.raises(ConfigError):
        FakePolicy(tok, [])
    with pytest.raises(ConfigError):
        FakePolicy(tok, ["x"], delay_s=-1)


@pytest.mark.parametrize(
    ("prompt", "error", "match"),
    [
        ([], InvalidPromptError, "empty"),
        ("hello", InvalidPromptError, "not text"),
        ([1, 2.0], InvalidPromptError, "must be ints"),
        ([1, True], InvalidPromptError, "must be ints"),
        ([1, 50], InvalidPromptError, "50 is outside the vocabulary"),
        ([-1, 2], InvalidPromptError, "-1 is outside"),
        (list(range(10)), PromptTooLongError, "10 tokens but the context window is 10"),
    ],
)
def test_check_prompt_errors(prompt: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        check_prompt(prompt, vocab_size=50, max_model_len=10)


def test_check_prompt_ok_and_room() -> None:
    assert check_prompt((1, 2, 3), vocab_size=50, max_model_len=4) == [1, 2, 3]
    assert room_for(prompt_len=3, max_tokens=10, max_model_len=8) == 5  # 8 - 3
    assert room_for(prompt_len=3, max_tokens=2, max_model_len=8) == 2
    assert room_for(prompt_len=3, max_tokens=10, max_model_len=None) == 10


@pytest.mark.parametrize("spec", ["gpu:/x", "vllm", "tiny", "http://localhost:8000"])
def test_unknown_scheme_lists_the_valid_ones(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_policy(spec)
    message = str(info.value)
    assert all(form in message for form in ["vllm:PATH", "openai:URL[#model]", "hf:PATH"])


@pytest.mark.parametrize(
    "spec", ["vllm:/no/such/model", "hf:/no/such/model", "hf:./nope", "vllm:~/nope-agentrl"]
)
def test_missing_path_is_policy_not_found(spec: str) -> None:
    with pytest.raises(PolicyNotFoundError, match="does not exist"):
        load_policy(spec)


def test_folder_without_config_is_policy_not_found(tmp_path: Path) -> None:
    with pytest.raises(PolicyNotFoundError, match="no config.json"):
        load_policy(f"hf:{tmp_path}")


def test_empty_target() -> None:
    with pytest.raises(ConfigError, match="nothing after"):
        load_policy("hf:")


def test_openai_spec_with_model(tiny_model_path: Path) -> None:
    pol = load_policy(f"openai:http://127.0.0.1:9/v1#{tiny_model_path}", max_retries=0)
    assert isinstance(pol, OpenAIPolicy)
    assert pol.base_url == "http://127.0.0.1:9" and pol.model == str(tiny_model_path)
    assert (
        pol.tokenizer is not None and pol.tokenizer.eos_token == "<|im_end|>"
    )  # model name is a local folder
    with pytest.raises(ConfigError, match="http"):
        load_policy("openai:127.0.0.1:8000")


def test_hf_tiny_uses_the_cached_default(
    tiny_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(tiny_model_path, tmp_path / "tiny-chat-v1")
    monkeypatch.setenv("AGENTRL_CACHE", str(tmp_path))
    pol = load_policy("hf:tiny")
    assert pol.model_path == str(tmp_path / "tiny-chat-v1")


def test_fake_imitates_a_context_window(tok: Any) -> None:
    pol = FakePolicy(tok, ["one two three four"], cycle=True, max_model_len=6)
    with pytest.raises(PromptTooLongError):
        _gen(pol, SamplingParams(), prompt=[1] * 6)
    cut = _gen(pol, SamplingParams(max_tokens=50), prompt=[1] * 4)[0]
    assert len(cut.token_ids) == 2 and cut.finish_reason == "length"  # 6 - 4 tokens of room


def test_policy_bench_cli(
    tiny_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse
    import json

    from agentrl.policy import bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out = tmp_path / "bench.json"
    args = parser.parse_args(
        [
            "--policy",
            f"hf:{tiny_model_path}",
            "--batch",
            "2",
            "--tokens",
            "4",
            "--repeats",
            "1",
            "--json",
            str(out),
        ]
    )
    assert bench.main(args) == 0
    data = json.loads(out.read_text())
    row = data["batches"]["2"]
    assert row["concurrent_calls_tok_s"] > 0 and row["one_call_n_tok_s"] > 0
    # the ratio (2 decimals) is taken before the tok/s figures are rounded to ints (+-0.5)
    c, s = row["concurrent_calls_tok_s"], row["one_call_n_tok_s"]
    assert (c - 0.5) / (s + 0.5) - 0.005 <= row["ratio"] <= (c + 0.5) / max(s - 0.5, 1e-9) + 0.005
    assert "B concurrent calls" in capsys.readouterr().out
