"""The tiny chat model: loads like a hub model, deterministic, exact ChatML template, prefix-preserving."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentrl.errors import ConfigError
from agentrl.models.tiny import TinyModelConfig, build_tiny_chat_model, default_tiny_model_path

CALC_TOOL = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def tok(tiny_model_path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


def test_loads_with_from_pretrained_as_a_qwen2_chat_model(tiny_model_path: Path, tok: Any) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    cfg = model.config
    assert cfg.model_type == "qwen2" and cfg.tie_word_embeddings
    assert cfg.hidden_size // cfg.num_attention_heads == 32  # a head dim CPU vLLM accepts
    assert cfg.max_position_embeddings == 4096
    assert 900 <= len(tok) <= 2048 and cfg.vocab_size == len(tok)
    assert model.dtype == torch.float32
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == im_end
    assert im_end in model.generation_config.eos_token_id
    ids = tok.encode("What is 2 + 3?")
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(tok))
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_loaded_tokenizer_agrees_with_the_trained_one(tiny_model_path: Path, tok: Any) -> None:
    # transformers rebuilds a qwen2 tokenizer's pipeline itself; it must match training.
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(tiny_model_path / "tokenizer.json"))
    texts = [
        "Hello  world\n\n  x = 1+2",
        'print({"a": "é ü 中"})\n\tdone',
        "It's 42!  ",
        "<tool_call>\n{}</tool_call>",
    ]
    for text in texts:
        assert tok.encode(text) == raw.encode(text).ids
        assert tok.decode(tok.encode(text)) == text  # byte-level: lossless


def test_special_tokens(tok: Any) -> None:
    for name in [
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
        "<|pad|>",
        "<tool_call>",
        "</tool_call>",
    ]:
        ids = tok.encode(name)
        assert len(ids) == 1 and tok.convert_ids_to_tokens(ids[0]) == name
    ids = tok.encode("<|im_start|>assistant\n<tool_call>x</tool_call><|im_end|>")
    # control tokens vanish with skip_special_tokens; tool-call tags must stay for parsers
    assert tok.decode(ids, skip_special_tokens=True) == "assistant\n<tool_call>x</tool_call>"
    assert tok.pad_token == "<|pad|>" and tok.pad_token_id != tok.eos_token_id


def test_template_renders_the_documented_format(tok: Any) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+3?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "2+3"}}}]},
        {"role": "tool", "content": "5"},
        {"role": "tool", "content": "ok"},
        {"role": "assistant", "content": "It is 5."},
        {"role": "user", "content": "Thanks"},
    ]  # fmt: skip
    expected = (
        "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions to assist "
        "with the user query.\n\nYou are provided with function signatures within <tools></tools> "
        "XML tags:\n<tools>\n" + json.dumps(CALC_TOOL, ensure_ascii=False) + "\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
        "<args-json-object>}\n</tool_call><|im_end|>\n"
        "<|im_start|>user\nWhat is 2+3?<|im_end|>\n"
        '<|im_start|>assistant\nLet me check.\n<tool_call>\n{"name": "calculator", "arguments": '
        '{"expression": "2+3"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n5\n</tool_response>\n<tool_response>\nok\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\nIt is 5.<|im_end|>\n"
        "<|im_start|>user\nThanks<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    got = tok.apply_chat_template(
        messages, tools=[CALC_TOOL], add_generation_prompt=True, tokenize=False
    )
    assert got == expected
    # without tools: the system turn is plain
    plain = tok.apply_chat_template(messages[:2], tokenize=False)
    assert (
        plain
        == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+3?<|im_end|>\n"
    )


_pieces = st.sampled_from(list('ab <>/{}"\n\t:_é') + ["<think>", "</think>", "  ", "\n\n"])
_text = st.lists(_pieces, max_size=12).map("".join)


@settings(max_examples=60, deadline=None)
@given(
    system=st.one_of(st.none(), _text),
    user=_text,
    reply=_text,
    tool_outputs=st.lists(_text, min_size=1, max_size=3),
    use_tools=st.booleans(),
)
def test_template_is_prefix_preserving(
    tok: Any, system: str | None, user: str, reply: str, tool_outputs: list[str], use_tools: bool
) -> None:
    # render(msgs + [assistant(X)] + tool msgs) == render(msgs, generation prompt) + X + <|im_end|> + rest,
    # with X verbatim (whitespace, <think> included): what token-in-token-out rollouts need.
    msgs = ([{"role": "system", "content": system}] if system is not None else []) + [
        {"role": "user", "content": user}
    ]
    tools = [CALC_TOOL] if use_tools else None
    prefix = tok.apply_chat_template(msgs, tools=tools, add_generation_prompt=True, tokenize=False)
    env_msgs = [{"role": "tool", "content": out} for out in tool_outputs]
    full = tok.apply_chat_template(
        msgs + [{"role": "assistant", "content": reply}] + env_msgs,
        tools=tools,
        add_generation_prompt=True,
        tokenize=False,
    )
    responses = "".join(f"\n<tool_response>\n{out}\n</tool_response>" for out in tool_outputs)
    assert (
        full
        == prefix
        + reply
        + "<|im_end|>\n<|im_start|>user"
        + responses
        + "<|im_end|>\n<|im_start|>assistant\n"
    )


def test_build_is_deterministic_given_the_seed(tiny_model_path: Path, tmp_path: Path) -> None:
    again = build_tiny_chat_model(tmp_path / "again", seed=0)
    other = build_tiny_chat_model(tmp_path / "other", seed=1)
    for name in ["model.safetensors", "tokenizer.json", "config.json", "generation_config.json"]:
        assert (again / name).read_bytes() == (tiny_model_path / name).read_bytes(), name
    assert (other / "tokenizer.json").read_bytes() == (
        tiny_model_path / "tokenizer.json"
    ).read_bytes()
    assert (other / "model.safetensors").read_bytes() != (
        tiny_model_path / "model.safetensors"
    ).read_bytes()


def test_default_path_builds_once_into_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AGENTRL_CACHE", str(tmp_path))
    path = default_tiny_model_path()
    assert path == tmp_path / "tiny-chat-v1" and (path / "config.json").is_file()
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert default_tiny_model_path() == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-chat-v1"]  # no temp folder left


@pytest.mark.parametrize(
    "kwargs",
    [{"hidden_size": 32, "num_attention_heads": 2}, {"num_attention_heads": 3}, {"vocab_size": 100},
     {"num_key_value_heads": 3, "num_attention_heads": 2}],
)  # fmt: skip
def test_bad_config_is_rejected(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        TinyModelConfig(**kwargs)
