"""Token-in-token-out conversations: concatenation equals a fresh render; bad templates raise."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentrl.errors import ChatTemplateError, PolicyError
from agentrl.rollout.tito import TokenConversation

# Qwen2.5-Instruct's chat template format, written out here from its documented layout:
# a default system prompt, tools listed in <tools> inside the system turn, assistant tool
# calls as <tool_call> JSON, and consecutive tool results sharing one user turn, each in
# <tool_response> tags.
QWEN25_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0].role == 'system' %}{{- messages[0].content }}"
    "{%- else %}{{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}{%- endif %}"
    "{{- '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, "
    "\"arguments\": <args-json-object>}\\n</tool_call><|im_end|>\\n' }}"
    "{%- else %}"
    "{%- if messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
    "assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or "
    "(message.role == 'assistant' and not message.tool_calls) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{{- '<|im_start|>' + message.role }}"
    "{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}"
    "{%- for tool_call in message.tool_calls %}"
    "{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}"
    "{{- '\\n<tool_call>\\n{\"name\": \"' }}{{- tool_call.name }}{{- '\", \"arguments\": ' }}"
    "{{- tool_call.arguments | tojson }}{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != 'tool') %}"
    "{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' }}{{- message.content }}{{- '\\n</tool_response>' }}"
    "{%- if loop.last or (messages[loop.index0 + 1].role != 'tool') %}{{- '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Llama 3's chat format, written out from its documented layout: BOS, a header per
# message, content trimmed, <|eot_id|> ending every turn and nothing after it.
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message.role + '<|end_header_id|>\n\n' + message.content | trim"
    " + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{%- endif %}"
)

# Like Qwen3's template: reasoning (<think>...</think>) of assistant turns before the last
# one is dropped from history. Rendering a longer conversation rewrites earlier turns.
DROPS_REASONING_TEMPLATE = (
    "{%- for m in messages %}"
    "{%- if m.role == 'assistant' and not loop.last %}"
    "{{- '<|im_start|>assistant\\n' + m.content.split('</think>')[-1].lstrip('\\n') + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Strips whitespace around assistant content.
TRIMS_CONTENT_TEMPLATE = (
    "{%- for m in messages %}"
    "{%- if m.role == 'assistant' %}{%- set c = m.content | trim %}{%- else %}{%- set c = m.content %}{%- endif %}"
    "{{- '<|im_start|>' + m.role + '\\n' + c + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Opens a <think> block in the generation prompt that history renders without.
THINK_PROMPT_TEMPLATE = (
    "{%- for m in messages %}{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}"
)

SYSTEM = (
    "You are a careful assistant. Use the tools.\n\n# Tools\n<tools>\n"
    '{"type": "function", "function": {"name": "calculator", "parameters": {"type": "object", '
    '"properties": {"expression": {"type": "string"}}, "required": ["expression"]}}}\n</tools>'
)
CALL = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "%s"}}\n</tool_call>'

# (assistant text, env messages that answer it); a tool conversation with two calls in
# one turn, a user follow-up and a final env message.
EPISODE: list[tuple[str, list[dict[str, Any]]]] = [
    (CALL % "12 * 7", [{"role": "tool", "content": "84", "tool_call_id": "c1", "name": "calculator"}]),
    (
        "Two more.\n" + CALL % "84 + 1" + "\n" + CALL % "84 - 1",
        [{"role": "tool", "content": "85"}, {"role": "tool", "content": "83"}],
    ),
    ("The answer is 84. ünïcödé ✓", [{"role": "user", "content": "Thanks! And 3 + 4?"}]),
    ("<answer>7</answer>", [{"role": "user", "content": "Correct."}]),
]


def with_template(tokenizer: Any, template: str) -> Any:
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = template
    return tok


def llama3_tokenizer(tokenizer: Any) -> Any:
    """The tiny tokenizer with Llama 3's special tokens and chat template."""
    tok = with_template(tokenizer, LLAMA3_TEMPLATE)
    tok.add_special_tokens({
        "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
        "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>"],
    })
    return tok


def model_ids(tok: Any, text: str, *, stop: bool = True) -> list[int]:
    """What a model that says ``text`` samples: its tokens, then its end-of-turn token if it stopped."""
    ids = tok.encode(text, add_special_tokens=False)
    return ids + [tok.eos_token_id] if stop else ids


def fresh_render(tok: Any, messages: list[dict[str, Any]], gen: bool) -> list[int]:
    """The whole conversation tokenized at once by transformers (the reference)."""
    return list(
        tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=gen, return_dict=False)
    )


def initial() -> list[dict[str, Any]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is 12 * 7?"}]


@pytest.mark.parametrize("template", ["tiny", "qwen2.5", "llama3"])
def test_concatenation_equals_fresh_render(tiny_tokenizer: Any, template: str) -> None:
    tok = {
        "tiny": lambda t: t,
        "qwen2.5": lambda t: with_template(t, QWEN25_TEMPLATE),
        "llama3": llama3_tokenizer,
    }[template](tiny_tokenizer)
    conv = TokenConversation(tok, initial())
    assert conv.token_ids == fresh_render(tok, initial(), True)
    assert conv.prompt_len == len(conv.token_ids) and sum(conv.loss_mask) == 0
    spans = []
    for k, (text, env_messages) in enumerate(EPISODE):
        ids = model_ids(tok, text)
        logprobs = [-0.25 * (i + 1) for i in range(len(ids))]
        turn = conv.add_model_turn(ids, logprobs)
        spans.append((turn.start, turn.end, ids, logprobs))
        assert turn.content == text
        last = k == len(EPISODE) - 1
        conv.add_env_messages(env_messages, add_generation_prompt=not last)
        assert conv.token_ids == fresh_render(tok, conv.messages, not last)
    # Mask is 1 exactly on the model's tokens, logprobs aligned with them.
    mask = [0] * len(conv.token_ids)
    for start, end, ids, logprobs in spans:
        assert conv.token_ids[start:end] == ids
        assert conv.logprobs[start:end] == logprobs
        mask[start:end] = [1] * (end - start)
    assert conv.loss_mask == mask
    assert all(lp == 0.0 for lp, m in zip(conv.logprobs, mask, strict=True) if m == 0)
    assert [m["role"] for m in conv.messages] == [
        "system", "user", "assistant", "tool", "assistant", "tool", "tool",
        "assistant", "user", "assistant", "user",
    ]


def test_closing_tokens_of_chatml(tiny_tokenizer: Any) -> None:
    tok = tiny_tokenizer
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    newline = tok.encode("\n", add_special_tokens=False)
    assert len(newline) == 1
    conv = TokenConversation(tok, initial())
    # ChatML closes an assistant turn with "<|im_end|>\n": 2 tokens of room are kept.
    assert conv.closing_length() == 2
    # Stopped on <|im_end|>: only "\n" is the template's.
    turn = conv.add_model_turn(model_ids(tok, "hi"), [-1.0] * 2)
    assert turn.closing_ids == tuple(newline)
    conv.add_env_messages([{"role": "user", "content": "go on"}])
    # Cut by the token limit: "<|im_end|>\n" both appended as non-model tokens.
    n = len(conv.token_ids)
    cut = model_ids(tok, "a long answer", stop=False)
    turn = conv.add_model_turn(cut, [-0.5] * len(cut))
    assert turn.closing_ids == (im_end, *newline)
    assert conv.token_ids[n:] == [*cut, im_end, *newline]
    assert conv.loss_mask[n:] == [1] * len(cut) + [0, 0]
    conv.add_env_messages([{"role": "user", "content": "ok"}])
    assert conv.token_ids == fresh_render(tok, conv.messages, True)


def test_other_stop_token_is_kept_and_turn_closed(tiny_tokenizer: Any) -> None:
    tok = tiny_tokenizer
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    newline = tok.encode("\n", add_special_tokens=False)
    conv = TokenConversation(tok, initial())
    ids = [*tok.encode("bye", add_special_tokens=False), eot]
    turn = conv.add_model_turn(ids, [-1.0] * len(ids))
    # The sampled <|endoftext|> stays a model token; ChatML's "<|im_end|>\n" closes the turn.
    assert turn.content == "bye" and conv.token_ids[turn.start:turn.end] == ids
    assert turn.closing_ids == (im_end, *newline)
    conv.add_env_messages([{"role": "user", "content": "ok"}])
    fresh = fresh_render(tok, conv.messages, True)
    assert conv.token_ids[:turn.end - 1] + conv.token_ids[turn.end:] == fresh


def test_model_tokens_are_never_retokenized(tiny_tokenizer: Any) -> None:
    tok = tiny_tokenizer
    text = "hello world"
    canonical = tok.encode(text, add_special_tokens=False)
    # One token per character: same text, ids a tokenizer would never produce.
    odd = [i for ch in text for i in tok.encode(ch, add_special_tokens=False)]
    assert odd != canonical and tok.decode(odd) == text
    conv = TokenConversation(tok, initial())
    ids = odd + [tok.convert_tokens_to_ids("<|im_end|>")]
    turn = conv.add_model_turn(ids, [-0.1] * len(ids))
    conv.add_env_messages([{"role": "tool", "content": "42"}])
    assert conv.token_ids[turn.start:turn.end] == ids
    fresh = fresh_render(tok, conv.messages, True)
    assert conv.token_ids != fresh  # a re-tokenizing collector would have produced `fresh`
    assert tok.decode(conv.token_ids) == tok.decode(fresh)


def test_template_that_drops_reasoning_is_rejected(tiny_tokenizer: Any) -> None:
    tok = with_template(tiny_tokenizer, DROPS_REASONING_TEMPLATE)
    conv = TokenConversation(tok, initial())
    ids = model_ids(tok, "<think>12*7 is 84</think>" + CALL % "12 * 7")
    conv.add_model_turn(ids, [-1.0] * len(ids))
    with pytest.raises(ChatTemplateError, match="not prefix-preserving.*changes how earlier turns"):
        conv.env_delta([{"role": "tool", "content": "84"}])
    # Without reasoning in the text the same template happens to work.
    conv = TokenConversation(tok, initial())
    ids = model_ids(tok, "84")
    conv.add_model_turn(ids, [-1.0] * len(ids))
    conv.add_env_messages([{"role": "user", "content": "ok"}])
    assert conv.token_ids == fresh_render(tok, conv.messages, True)


def test_template_that_rewrites_assistant_content_is_rejected(tiny_tokenizer: Any) -> None:
    tok = with_template(tiny_tokenizer, TRIMS_CONTENT_TEMPLATE)
    ids = model_ids(tok, "The answer is 84.  \n")
    # Found by the next env message's render ...
    conv = TokenConversation(tok, initial())
    conv.add_model_turn(ids, [-1.0] * len(ids))
    with pytest.raises(ChatTemplateError, match="rewrites assistant content"):
        conv.env_delta([{"role": "tool", "content": "84"}])
    # ... or by verify() when the conversation ends with the model's turn.
    conv = TokenConversation(tok, initial())
    conv.add_model_turn(ids, [-1.0] * len(ids))
    with pytest.raises(ChatTemplateError, match="rewrites assistant content"):
        conv.verify()
    # Content the template leaves alone passes, and verify() then has nothing to say.
    conv = TokenConversation(tok, initial())
    ok = model_ids(tok, "The answer is 84.")
    conv.add_model_turn(ok, [-1.0] * len(ok))
    conv.verify()
    assert conv.token_ids == fresh_render(tok, conv.messages, False)


def test_turn_ending_that_depends_on_content_is_rejected(tiny_tokenizer: Any) -> None:
    tok = with_template(tiny_tokenizer, (
        "{%- for m in messages %}{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>' }}"
        "{%- if m.content.endswith('?') %}{{- ' (asked)' }}{%- endif %}{{- '\\n' }}{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    ))
    conv = TokenConversation(tok, initial()[:1])
    ids = model_ids(tok, "Which one?")
    conv.add_model_turn(ids, [-1.0] * len(ids))
    with pytest.raises(ChatTemplateError, match="ending does not depend on the content"):
        conv.verify()


def test_generation_prompt_unlike_history_is_rejected(tiny_tokenizer: Any) -> None:
    tok = with_template(tiny_tokenizer, THINK_PROMPT_TEMPLATE)
    conv = TokenConversation(tok, initial())
    ids = model_ids(tok, "fine</think>84")
    with pytest.raises(ChatTemplateError, match="does not start with the prompt"):
        conv.add_model_turn(ids, [-1.0] * len(ids))


def test_misuse_raises(tiny_tokenizer: Any) -> None:
    conv = TokenConversation(tiny_tokenizer, initial())
    with pytest.raises(ChatTemplateError, match="only follow a model turn"):
        conv.env_delta([{"role": "user", "content": "x"}])
    with pytest.raises(PolicyError, match="2 token ids but 1 logprobs"):
        conv.add_model_turn([5, 6], [-1.0])
    ids = model_ids(tiny_tokenizer, "a")
    conv.add_model_turn(ids, [-1.0] * len(ids))
    with pytest.raises(ChatTemplateError, match="does not end with a generation prompt"):
        conv.add_model_turn([5], [-1.0])
    stale = conv.env_delta([{"role": "user", "content": "x"}])
    conv.add_env_messages([{"role": "user", "content": "y"}])
    with pytest.raises(ChatTemplateError, match="stale"):
        conv.append_env(stale)
    with pytest.raises(ChatTemplateError, match="at least one"):
        TokenConversation(tiny_tokenizer, [])
    no_template = with_template(tiny_tokenizer, None)
    with pytest.raises(ChatTemplateError, match="no chat template"):
        TokenConversation(no_template, initial())


# Text without the tokenizer's special-token strings (those cannot be plain content).
_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="<|"), max_size=30)
# Replies not starting with whitespace: only then is tokenizing the reply alone the same
# as tokenizing it in context ("assistant\n" + "\nfoo" renders "\n\n", one token). A model
# that sampled a separate "\n" keeps that token here (token-in-token-out), so a fresh
# render would differ; test_model_tokens_are_never_retokenized covers that case.
_REPLY = _TEXT.filter(lambda t: not t[:1].isspace())
_ENV_MESSAGE = st.one_of(
    st.builds(lambda c: {"role": "tool", "content": c}, _TEXT),
    st.builds(lambda c: {"role": "user", "content": c}, _TEXT),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    template=st.sampled_from(["tiny", "qwen2.5"]),
    turns=st.lists(st.tuples(_REPLY, st.lists(_ENV_MESSAGE, min_size=1, max_size=3)),
                   min_size=1, max_size=4),
)
def test_concatenation_equals_fresh_render_property(
    tiny_tokenizer: Any, template: str, turns: list[tuple[str, list[dict[str, Any]]]]
) -> None:
    tok = tiny_tokenizer if template == "tiny" else _qwen_tokenizer(tiny_tokenizer)
    conv = TokenConversation(tok, initial())
    for text, env_messages in turns:
        ids = model_ids(tok, text)
        turn = conv.add_model_turn(ids, [-1.0] * len(ids))
        assert conv.token_ids[turn.start:turn.end] == ids
        conv.add_env_messages(env_messages)
    assert conv.token_ids == fresh_render(tok, conv.messages, True)
    assert sum(conv.loss_mask) == sum(len(model_ids(tok, t)) for t, _ in turns)


_QWEN: dict[int, Any] = {}


def _qwen_tokenizer(tokenizer: Any) -> Any:
    if id(tokenizer) not in _QWEN:
        _QWEN[id(tokenizer)] = with_template(tokenizer, QWEN25_TEMPLATE)
    return _QWEN[id(tokenizer)]
