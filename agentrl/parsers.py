"""Tool-call parsing and rendering.

Parsing is *total*: for every input string a parser returns a :class:`ParseResult`
(calls, plus structured errors for malformed parts); it never raises. Three formats:

- ``hermes``: ``<tool_call>{"name": "f", "arguments": {...}}</tool_call>`` (Hermes, Qwen);
  several per message; text outside the tags is the message content.
- ``json``: the whole message is a JSON object ``{"name", "arguments"|"parameters"}`` or a
  list of them (optionally inside a Markdown code fence).
- ``pythonic``: ``[f(a=1, b="x"), g()]`` as used by BFCL and Llama models; arguments
  must be Python literals (parsed with :mod:`ast`, never evaluated).

:func:`parse_native_calls` reads OpenAI-style native ``tool_calls`` (a chat API's
structured calls) into the same :class:`ParseResult`, keeping each call's id.
"""

from __future__ import annotations

import abc
import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

from agentrl._records import fast_init
from agentrl.errors import InvalidActionError, ToolFormatError
from agentrl.spaces import tool_call_problem

__all__ = [
    "ToolCall",
    "ParseError",
    "ParseResult",
    "ToolCallParser",
    "HermesParser",
    "JSONParser",
    "PythonicParser",
    "PARSERS",
    "get_parser",
    "parse_native_calls",
]

# Inputs past this size are not handed to json/ast (cost and recursion); they still get a
# structured error, never an exception.
MAX_PARSE_CHARS = 200_000
_MAX_NESTING = 100


@fast_init
@dataclass(frozen=True)
class ToolCall:
    """One call the model asked for."""

    name: str
    """Tool name."""
    arguments: Any = field(default_factory=dict)
    """Decoded arguments; a dict when well-formed (validated later against the tool schema)."""
    id: str = ""
    """The call's id when the model gave one (native ``tool_calls``, see
    :func:`parse_native_calls`); empty for text formats, which have no ids (the
    environment then names the call ``call_<turn>_<i>`` in its ``tool`` message)."""


@fast_init
@dataclass(frozen=True)
class ParseError:
    """A part of the message that looked like a tool call but could not be decoded."""

    message: str
    """What was wrong, written for the model to read."""
    snippet: str = ""
    """The offending text (shortened)."""


@fast_init
@dataclass(frozen=True)
class ParseResult:
    """Everything a parser found in one assistant message."""

    calls: tuple[ToolCall, ...] = ()
    errors: tuple[ParseError, ...] = ()
    content: str = ""
    """The message text with the tool calls removed (the answer, for a final message)."""

    @property
    def ok(self) -> bool:
        return not self.errors


def _not_text(value: Any) -> None:
    if not isinstance(value, str):
        raise InvalidActionError(
            f"a parser reads the assistant's text (a str), got {type(value).__name__}"
        )


def _snip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _too_deep(text: str) -> bool:
    # Fast path (C-speed counts): nesting can never exceed the number of openers.
    if text.count("{") + text.count("[") + text.count("(") <= _MAX_NESTING:
        return False
    depth = peak = 0
    for ch in text:
        if ch in "[{(":
            depth += 1
            peak = max(peak, depth)
        elif ch in "]})":
            depth -= 1
    return peak > _MAX_NESTING


# ``json.loads(s)`` is ``scan_once(s, 0)`` between whitespace skips and an end check; the
# parsers call the scanner directly and fall back to ``json.loads`` for anything else.
_scan_once = json.decoder.JSONDecoder().scan_once


def _loads(text: str) -> tuple[Any, str | None]:
    """json.loads that reports errors as text instead of raising."""
    n = len(text)
    if n > MAX_PARSE_CHARS:
        return None, f"tool call is too long ({n} characters, limit {MAX_PARSE_CHARS})"
    if n > _MAX_NESTING and _too_deep(text):  # deeper nesting needs more characters
        return None, f"tool call is nested more than {_MAX_NESTING} levels deep"
    try:  # the C scanner directly: json.loads minus its Python layers (same result)
        obj, end = _scan_once(text, 0)
        if end == n:
            return obj, None
    except (StopIteration, json.JSONDecodeError, RecursionError):
        pass  # json.loads below gives the error its usual message
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        return None, "invalid JSON: nested too deeply"


def _call_from_obj(obj: Any) -> ToolCall | ParseError:
    """``{"name": str, "arguments"|"parameters": object-or-JSON-string}`` -> ToolCall."""
    if not isinstance(obj, dict):
        return ParseError(f"a tool call must be a JSON object, got {type(obj).__name__}", _snip(str(obj)))
    name = obj.get("name")
    if not name or not isinstance(name, str):
        return ParseError('a tool call needs a "name" string', _snip(json.dumps(obj, default=str)))
    args = obj["arguments"] if "arguments" in obj else obj.get("parameters", {})
    if isinstance(args, str):  # OpenAI style: arguments as a JSON string
        decoded, err = _loads(args) if args.strip() else ({}, None)
        if err:
            return ParseError(f"arguments of {name!r}: {err}", _snip(args))
        args = decoded
    return ToolCall(name, args)


class ToolCallParser(abc.ABC):
    """Parses tool calls out of assistant text and renders calls back into that format."""

    name: str = ""

    @abc.abstractmethod
    def parse(self, text: str) -> ParseResult:
        """Return the calls and errors in ``text``; must never raise."""

    @abc.abstractmethod
    def render(self, calls: list[ToolCall], content: str = "") -> str:
        """Render ``calls`` (after optional ``content``) as the model would write them."""

    @abc.abstractmethod
    def format_instructions(self) -> str:
        """One paragraph telling the model how to call tools in this format."""


class HermesParser(ToolCallParser):
    name = "hermes"
    _BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)

    def parse(self, text: str) -> ParseResult:
        if type(text) is not str:
            _not_text(text)
        start = text.find("<tool_call>")
        if start < 0:  # fast path: a plain message (no block can match)
            return ParseResult(content=text.strip())
        end = text.find("</tool_call>", start + 11)
        rest = text[end + 12 :] if end >= 0 else ""
        if "<tool_call>" not in rest:  # fast path: one block (what _BLOCK would match)
            body = (text[start + 11 : end] if end >= 0 else text[start + 11 :]).strip()
            obj, err = _loads(body)
            if err:
                item: ToolCall | ParseError = ParseError(err, _snip(body))
            elif type(obj) is dict:
                item = _call_from_obj(obj)
            else:
                return self._parse_blocks(text)
            content = (text[:start] + rest).strip() if rest else text[:start].strip()
            if type(item) is ToolCall:
                return ParseResult((item,), (), content)
            return ParseResult((), (item,), content)  # type: ignore[arg-type]
        return self._parse_blocks(text)

    def _parse_blocks(self, text: str) -> ParseResult:
        calls: list[ToolCall] = []
        errors: list[ParseError] = []
        pieces: list[str] = []  # the text outside the blocks, i.e. _BLOCK.sub("", text)
        pos = 0
        for m in self._BLOCK.finditer(text):
            pieces.append(text[pos : m.start()])
            pos = m.end()
            body = m.group(1).strip()
            obj, err = _loads(body)
            if err:
                errors.append(ParseError(err, _snip(body)))
                continue
            if type(obj) is dict:
                item = _call_from_obj(obj)
                (calls if type(item) is ToolCall else errors).append(item)  # type: ignore[arg-type]
                continue
            for o in obj if isinstance(obj, list) else [obj]:
                item = _call_from_obj(o)
                (calls if isinstance(item, ToolCall) else errors).append(item)  # type: ignore[arg-type]
        pieces.append(text[pos:])
        return ParseResult(tuple(calls), tuple(errors), "".join(pieces).strip())

    def render(self, calls: list[ToolCall], content: str = "") -> str:
        blocks = [
            "<tool_call>\n"
            + json.dumps({"name": c.name, "arguments": c.arguments}, ensure_ascii=False)
            + "\n</tool_call>"
            for c in calls
        ]
        return "\n".join(([content] if content else []) + blocks)

    def format_instructions(self) -> str:
        return (
            "To call a tool, write one or more blocks of the form\n"
            '<tool_call>\n{"name": "<tool name>", "arguments": {<arguments as JSON>}}\n</tool_call>\n'
            "and stop. The results come back as tool messages. When you are done, reply with "
            "the final answer and no tool call."
        )


_FENCE = re.compile(r"\A```(?:json|python)?\s*\n?(.*?)\n?```\Z", re.DOTALL)


def _unfence(text: str) -> str:
    stripped = text.strip()
    m = _FENCE.match(stripped)
    return m.group(1).strip() if m else stripped


class JSONParser(ToolCallParser):
    name = "json"

    def parse(self, text: str) -> ParseResult:
        if type(text) is not str:
            _not_text(text)
        body = _unfence(text)
        if not body.startswith(("{", "[")):
            return ParseResult(content=text.strip())
        obj, err = _loads(body)
        if err:
            return ParseResult(errors=(ParseError(err, _snip(body)),))
        objs = obj if isinstance(obj, list) else [obj]
        if not objs or not all(isinstance(o, dict) and "name" in o for o in objs):
            return ParseResult(content=text.strip())  # plain JSON data, not a call
        calls, errors = [], []
        for o in objs:
            item = _call_from_obj(o)
            (calls if isinstance(item, ToolCall) else errors).append(item)
        return ParseResult(tuple(calls), tuple(errors), "")

    def render(self, calls: list[ToolCall], content: str = "") -> str:
        objs = [{"name": c.name, "arguments": c.arguments} for c in calls]
        return json.dumps(objs[0] if len(objs) == 1 else objs, ensure_ascii=False)

    def format_instructions(self) -> str:
        return (
            'To call tools, reply with only a JSON object {"name": "<tool name>", "arguments": '
            "{...}} or a JSON list of such objects. When you are done, reply with the final "
            "answer as plain text."
        )


def _dotted_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted_name(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


class PythonicParser(ToolCallParser):
    name = "pythonic"

    def parse(self, text: str) -> ParseResult:
        if type(text) is not str:
            _not_text(text)
        body = _unfence(text)
        if not (body.startswith("[") and body.endswith("]")) or "(" not in body:
            return ParseResult(content=text.strip())
        if len(body) > MAX_PARSE_CHARS or _too_deep(body):
            return ParseResult(errors=(ParseError("tool call list is too long or nested too deeply", _snip(body)),))
        try:
            tree = ast.parse(body, mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            return ParseResult(errors=(ParseError(f"invalid call list: {exc.__class__.__name__}: {exc}", _snip(body)),))
        if not isinstance(tree.body, ast.List):
            return ParseResult(content=text.strip())
        calls: list[ToolCall] = []
        errors: list[ParseError] = []
        for node in tree.body.elts:
            seg = _snip(ast.get_source_segment(body, node) or "")
            name = _dotted_name(node.func) if isinstance(node, ast.Call) else None
            if name is None:
                errors.append(ParseError("each list item must be a call like f(a=1)", seg))
                continue
            if node.args:  # type: ignore[union-attr]
                errors.append(ParseError(f"{name}: use keyword arguments only (a=1)", seg))
                continue
            try:
                args = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}  # type: ignore[union-attr]
            except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError) as exc:
                errors.append(ParseError(f"{name}: arguments must be literals ({exc})", seg))
                continue
            if any(kw.arg is None for kw in node.keywords):  # type: ignore[union-attr]
                errors.append(ParseError(f"{name}: **kwargs are not allowed", seg))
                continue
            calls.append(ToolCall(name=name, arguments=args))
        return ParseResult(tuple(calls), tuple(errors), "")

    def render(self, calls: list[ToolCall], content: str = "") -> str:
        def one(c: ToolCall) -> str:
            args = c.arguments if isinstance(c.arguments, dict) else {}
            return f"{c.name}(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")"

        return "[" + ", ".join(one(c) for c in calls) + "]"

    def format_instructions(self) -> str:
        return (
            "To call tools, reply with only a Python list of calls with keyword arguments, e.g. "
            '[func_name(a=1, b="x")]. When you are done, reply with the final answer as plain text.'
        )


PARSERS: dict[str, type[ToolCallParser]] = {
    p.name: p for p in (HermesParser, JSONParser, PythonicParser)
}


def get_parser(name: str | ToolCallParser) -> ToolCallParser:
    """Return a parser instance by name (``hermes``, ``json``, ``pythonic``)."""
    if isinstance(name, ToolCallParser):
        return name
    try:
        return PARSERS[name]()
    except (KeyError, TypeError):  # TypeError: an unhashable name
        raise ToolFormatError(
            f"unknown tool-call format {name!r}; choose one of: {', '.join(PARSERS)} "
            "(or pass a ToolCallParser instance)"
        ) from None


def parse_native_calls(tool_calls: Any) -> ParseResult:
    """Read OpenAI-style native ``tool_calls`` (from an assistant message) into calls.

    Each entry is ``{"id": str, "type": "function", "function": {"name": str,
    "arguments": JSON str | dict}}``. Never raises: malformed entries become
    parse errors, as for text formats. The calls keep their ``id``.
    """
    if not isinstance(tool_calls, list):
        return ParseResult(errors=(ParseError(f"tool_calls must be a list, got {type(tool_calls).__name__}"),))
    calls: list[ToolCall] = []
    errors: list[ParseError] = []
    for entry in tool_calls:
        if problem := tool_call_problem(entry):
            errors.append(ParseError(problem, _snip(repr(entry))))
            continue
        item = _call_from_obj(entry["function"])
        if isinstance(item, ParseError):
            errors.append(item)
        else:
            calls.append(ToolCall(item.name, item.arguments, str(entry.get("id", ""))))
    return ParseResult(tuple(calls), tuple(errors), "")
