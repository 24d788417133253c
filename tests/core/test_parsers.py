"""Tool-call parsers: known formats, malformed input, and totality (property-based)."""

from __future__ import annotations

import keyword

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentrl.parsers import (
    PARSERS,
    HermesParser,
    JSONParser,
    ParseResult,
    PythonicParser,
    ToolCall,
    get_parser,
)


def test_hermes_several_calls_and_content():
    text = (
        "Let me compute.\n"
        '<tool_call>\n{"name": "calculator", "arguments": {"expression": "1+2"}}\n</tool_call>\n'
        '<tool_call>{"name": "search", "arguments": {"q": "x", "k": 3}}</tool_call>'
    )
    r = HermesParser().parse(text)
    assert r.ok
    assert r.calls == (
        ToolCall("calculator", {"expression": "1+2"}),
        ToolCall("search", {"q": "x", "k": 3}),
    )
    assert r.content == "Let me compute."


def test_hermes_unclosed_block_at_end_of_generation():
    # Models often stop on the stop string before writing </tool_call>.
    r = HermesParser().parse('<tool_call>{"name": "f", "arguments": {}}')
    assert r.calls == (ToolCall("f", {}),)


def test_hermes_openai_style_string_arguments_and_parameters_key():
    r = HermesParser().parse('<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>'
                             '<tool_call>{"name": "g", "parameters": {"b": 2}}</tool_call>')
    assert r.calls == (ToolCall("f", {"a": 1}), ToolCall("g", {"b": 2}))


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("{not json}", "invalid JSON"),
        ('{"arguments": {}}', '"name"'),
        ('"just a string"', "must be a JSON object"),
        ('{"name": "f", "arguments": "{broken"}', "arguments of 'f'"),
        ("[" * 500 + "]" * 500, "nested"),
    ],
)
def test_hermes_malformed_blocks_become_errors(body, needle):
    r = HermesParser().parse(f"<tool_call>{body}</tool_call>")
    assert r.calls == ()
    assert len(r.errors) == 1 and needle in r.errors[0].message


def test_hermes_good_and_bad_blocks_together():
    r = HermesParser().parse('<tool_call>{"name": "a", "arguments": {}}</tool_call><tool_call>{x</tool_call>')
    assert [c.name for c in r.calls] == ["a"] and len(r.errors) == 1


def test_json_parser_object_list_and_fence():
    p = JSONParser()
    assert p.parse('{"name": "f", "arguments": {"x": 1}}').calls == (ToolCall("f", {"x": 1}),)
    assert p.parse('[{"name": "f", "arguments": {}}, {"name": "g", "parameters": {"y": [1]}}]').calls == (
        ToolCall("f", {}),
        ToolCall("g", {"y": [1]}),
    )
    assert p.parse('```json\n{"name": "f", "arguments": {}}\n```').calls == (ToolCall("f", {}),)


def test_json_parser_plain_text_and_plain_json_are_answers():
    p = JSONParser()
    r = p.parse("The answer is 4.")
    assert r.calls == () and r.errors == () and r.content == "The answer is 4."
    r = p.parse('{"result": 4}')  # JSON data without a "name" is not a call
    assert r.calls == () and r.errors == ()
    assert p.parse("{broken").errors


def test_pythonic_bfcl_style():
    r = PythonicParser().parse('[get_weather(city="San Francisco", days=3), spotify.play(artist=\'Queen\', shuffle=True, tags=None)]')
    assert r.calls == (
        ToolCall("get_weather", {"city": "San Francisco", "days": 3}),
        ToolCall("spotify.play", {"artist": "Queen", "shuffle": True, "tags": None}),
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[f(1)]", "keyword arguments only"),
        ("[f(x=os.system('ls'))]", "must be literals"),
        ("[f(**kw)]", "**kwargs"),
        ("[1, f(a=2)]", "must be a call"),
        ("[f(x=)]", "invalid call list"),
    ],
)
def test_pythonic_errors(text, needle):
    r = PythonicParser().parse(text)
    assert any(needle in e.message for e in r.errors), r


def test_pythonic_never_evaluates():
    # If this were evaluated, the name lookup would fail or a file would be opened.
    r = PythonicParser().parse("[f(x=open('/etc/passwd').read())]")
    assert r.calls == () and r.errors


def test_plain_text_with_brackets_is_content_for_pythonic():
    r = PythonicParser().parse("[1, 2, 3]")
    assert r.calls == () and r.errors == ()


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_render_then_parse_roundtrips(name):
    p = get_parser(name)
    calls = [ToolCall("f", {"a": 1, "b": "x y", "c": [1.5, None, True]}), ToolCall("g.h", {})]
    assert p.parse(p.render(calls)).calls == tuple(calls)


def test_unknown_format_is_clear():
    with pytest.raises(ValueError, match="unknown tool-call format 'xml'.*hermes"):
        get_parser("xml")


# --- property-based: parsing is total --------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)
# Python keywords cannot be call or keyword-argument names in the pythonic format.
_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True).filter(lambda n: not keyword.iskeyword(n))
_fragments = st.sampled_from(
    ["<tool_call>", "</tool_call>", "{", "}", "[", "]", "(", ")", '"', "name", "arguments", ":", ",", "=", "\\", "```", "\n"]
)
_nasty = st.lists(st.one_of(_fragments, st.text(max_size=8)), max_size=40).map("".join)


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(st.text(max_size=300), _nasty))
@pytest.mark.parametrize("name", sorted(PARSERS))
def test_parsing_is_total(name, text):
    r = get_parser(name).parse(text)
    assert isinstance(r, ParseResult)
    assert all(isinstance(c.name, str) and c.name for c in r.calls)


@settings(max_examples=200, deadline=None)
@given(name=_names, args=st.dictionaries(_names, _json_values, max_size=4))
@pytest.mark.parametrize("fmt", sorted(PARSERS))
def test_any_well_formed_call_roundtrips(fmt, name, args):
    p = get_parser(fmt)
    call = ToolCall(name, args)
    assert p.parse(p.render([call])).calls == (call,)


def test_huge_inputs_are_bounded():
    big = "<tool_call>" + "x" * 1_000_000 + "</tool_call>"
    r = HermesParser().parse(big)
    assert r.calls == () and "too long" in r.errors[0].message
    r = PythonicParser().parse("[" + "f(a=1), " * 100_000 + "]")
    assert r.errors and "too long" in r.errors[0].message


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(_nasty, st.builds(
    lambda pre, body, post, close: f"{pre}<tool_call>{body}{close}{post}",
    st.text(max_size=20), st.one_of(_nasty, st.text(max_size=40)), _nasty,
    st.sampled_from(["</tool_call>", ""]),
)))
def test_hermes_single_block_fast_path_matches_the_general_scan(text):
    # parse() takes a fast path for one block; the general block scan is the reference.
    p = HermesParser()
    assert p.parse(text) == p._parse_blocks(text)
