"""Tools: typed, documented Python callables with an OpenAI-style JSON schema.

    @tool
    def add(a: int, b: int = 0) -> int:
        '''Add two integers.

        Args:
            a: The first addend.
            b: The second addend.
        '''
        return a + b

``add.schema`` is the OpenAI function schema; ``add.run({"a": 1})`` validates the
arguments against it, calls the function and returns a :class:`ToolResult`. Wrong
arguments never raise: they come back as a failed result whose text tells the model what
was wrong, because an agent's mistake is an observation, not an exception.
A tool signals a failure the model should see (division by zero, file not found) by
raising :class:`ToolError`.
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from agentrl._records import fast_init
from agentrl.errors import ToolDefinitionError

__all__ = ["Tool", "ToolError", "ToolResult", "tool", "json_schema_for"]

_NoneType = type(None)


class ToolError(Exception):
    """Raised *inside* a tool to report a failure to the model (becomes a tool error message).

    Deliberately outside :class:`agentrl.errors.AgentRLError`: it is an observation for the
    agent, not a framework error.
    """


@fast_init
@dataclass(frozen=True)
class ToolResult:
    """Outcome of one tool call, as the environment reports it."""

    name: str
    """Tool name the model asked for."""
    content: str
    """Text returned to the model as the ``tool`` message."""
    ok: bool
    """False when the call failed (unknown tool, bad arguments, tool error)."""
    error_kind: str | None = None
    """``unknown_tool``, ``bad_arguments`` or ``tool_error`` when ``ok`` is False."""


def json_schema_for(annotation: Any) -> dict[str, Any]:
    """JSON schema of a Python type annotation (str, int, float, bool, list, dict, Literal, Optional)."""
    if annotation is str:
        return {"type": "string"}
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        return {"type": "integer"}
    if annotation is float:
        return {"type": "number"}
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        kinds = {type(a) for a in args}
        schema: dict[str, Any] = {"enum": list(args)}
        if len(kinds) == 1:
            schema.update(json_schema_for(kinds.pop()))
        return schema
    if origin in (Union, types.UnionType):
        non_none = [a for a in args if a is not _NoneType]
        if len(non_none) == 1:
            return {**json_schema_for(non_none[0]), "nullable": True}
        return {"anyOf": [json_schema_for(a) for a in args]}
    if annotation is list or origin is list:
        return {"type": "array", **({"items": json_schema_for(args[0])} if args else {})}
    if annotation is dict or origin is dict:
        extra = {"additionalProperties": json_schema_for(args[1])} if args else {}
        return {"type": "object", **extra}
    raise ToolDefinitionError(
        f"unsupported parameter type {annotation!r}; use str, int, float, bool, list[...], "
        "dict[str, ...], Literal[...] or Optional[...]"
    )


def _check_value(value: Any, schema: Mapping[str, Any], path: str) -> str | None:
    """Return an error message if ``value`` does not match ``schema``, else None."""
    if value is None:
        return None if schema.get("nullable") else f"{path} must not be null"
    if "anyOf" in schema:
        if all(_check_value(value, s, path) for s in schema["anyOf"]):
            return f"{path} has the wrong type ({type(value).__name__})"
        return None
    if "enum" in schema and value not in schema["enum"]:
        return f"{path} must be one of {schema['enum']}, got {value!r}"
    kind = schema.get("type")
    ok = {
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
        None: True,
    }[kind]
    if not ok:
        return f"{path} must be of type {kind}, got {type(value).__name__} {_short(value)}"
    if kind == "array" and "items" in schema:
        for i, item in enumerate(value):
            if err := _check_value(item, schema["items"], f"{path}[{i}]"):
                return err
    if kind == "object" and "additionalProperties" in schema:
        for k, item in value.items():
            if err := _check_value(item, schema["additionalProperties"], f"{path}.{k}"):
                return err
    return None


def _is_str(v: Any) -> bool:
    return type(v) is str


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_number(v: Any) -> bool:
    return type(v) is int or type(v) is float


def _is_bool(v: Any) -> bool:
    return type(v) is bool


def _is_list(v: Any) -> bool:
    return type(v) is list


def _is_dict(v: Any) -> bool:
    return type(v) is dict


_QUICK = {"string": _is_str, "integer": _is_int, "number": _is_number, "boolean": _is_bool}


def _quick_accept(schema: Mapping[str, Any]) -> Callable[[Any], bool] | None:
    """A test that is True only for values :func:`_check_value` accepts (exact built-in
    types of the schema's plain type); None when the schema needs the full check."""
    if "anyOf" in schema or "enum" in schema:
        return None
    kind = schema.get("type")
    if kind in _QUICK:
        return _QUICK[kind]
    if kind == "array" and "items" not in schema:
        return _is_list
    if kind == "object" and "additionalProperties" not in schema:
        return _is_dict
    return None


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (description, {param: description})."""
    doc = inspect.cleandoc(doc or "")
    head, _, rest = doc.partition("\nArgs:")
    params: dict[str, str] = {}
    current: str | None = None
    for line in rest.splitlines():
        if line.strip() and not line.startswith(" ") and current is not None:
            break  # next section ("Returns:")
        m = re.match(r"\s+(\w+)(?:\s*\([^)]*\))?:\s*(.*)", line)
        if m and (current is None or len(line) - len(line.lstrip()) <= 4):
            current = m.group(1)
            params[current] = m.group(2).strip()
        elif current and line.strip():
            params[current] += " " + line.strip()
    return head.strip(), params


class Tool:
    """A callable the model can invoke, with its JSON schema and argument validation.

    Build one with :func:`tool`. ``fn`` is called with keyword arguments only after they
    validated against ``parameters`` (read once, at construction: a subclass that sets
    ``parameters`` itself without calling ``Tool.__init__`` gets the full check every time).
    """

    #: Per-argument quick type tests built from ``parameters`` in ``__init__`` (None: none).
    _accept: dict[str, Callable[[Any], bool] | None] | None = None
    _required: tuple[str, ...] = ()

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None):
        if not callable(fn):
            raise ToolDefinitionError(f"a tool must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = name or fn.__name__
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", self.name):
            raise ToolDefinitionError(f"invalid tool name {self.name!r}")
        doc_description, param_docs = _parse_docstring(fn.__doc__ or "")
        self.description = description or doc_description
        if not self.description:
            raise ToolDefinitionError(
                f"tool {self.name!r} needs a description: write a docstring or pass description="
            )
        hints = typing.get_type_hints(fn)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for p in inspect.signature(fn).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise ToolDefinitionError(f"tool {self.name!r}: *args/**kwargs are not supported")
            if p.name not in hints:
                raise ToolDefinitionError(
                    f"tool {self.name!r}: parameter {p.name!r} needs a type annotation"
                )
            prop = json_schema_for(hints[p.name])
            if p.name in param_docs:
                prop["description"] = param_docs[p.name]
            if p.default is p.empty:
                required.append(p.name)
            else:
                prop["default"] = p.default
            properties[p.name] = prop
        self.parameters: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }
        # Per argument, a quick test that accepts the common valid values (plain types);
        # anything it does not accept (or a schema it cannot judge: None) goes through the
        # full check, which also writes the message. Built from ``parameters`` once.
        self._accept = {k: _quick_accept(v) for k, v in properties.items()}
        self._required = tuple(required)

    @property
    def schema(self) -> dict[str, Any]:
        """OpenAI function-calling schema: ``{"type": "function", "function": {...}}``."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def validate(self, arguments: Any) -> str | None:
        """Return a message saying what is wrong with ``arguments``, or None if they are valid."""
        if type(arguments) is dict and self._accept is not None:
            for k in self._required:
                if k not in arguments:
                    return self._full_check(arguments)
            accept = self._accept
            for key, value in arguments.items():
                test = accept.get(key)
                if test is None or not test(value):
                    return self._full_check(arguments)
            return None
        return self._full_check(arguments)

    def _full_check(self, arguments: Any) -> str | None:
        if not isinstance(arguments, dict):
            return f"arguments must be a JSON object, got {type(arguments).__name__}"
        props = self.parameters["properties"]
        missing = [k for k in self.parameters["required"] if k not in arguments]
        if missing:
            return f"missing required argument(s): {', '.join(missing)}"
        extra = [k for k in arguments if k not in props]
        if extra:
            return (
                f"unexpected argument(s): {', '.join(map(str, extra))}; "
                f"valid arguments: {', '.join(props) or '(none)'}"
            )
        for key, value in arguments.items():
            if err := _check_value(value, props[key], key):
                return err
        return None

    def run(self, arguments: Any) -> ToolResult:
        """Validate ``arguments`` and call the tool; never raises for the model's mistakes."""
        if err := self.validate(arguments):
            return ToolResult(self.name, f"Error: invalid arguments for {self.name}: {err}", False, "bad_arguments")
        try:
            out = self.fn(**arguments)
        except ToolError as exc:
            return ToolResult(self.name, f"Error: {exc}", False, "tool_error")
        return ToolResult(self.name, out if isinstance(out, str) else json.dumps(out, default=str), True)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool(name={self.name!r})"


@typing.overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@typing.overload
def tool(*, name: str | None = None, description: str | None = None) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None, /, *, name: str | None = None, description: str | None = None
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a typed, documented function into a :class:`Tool` (usable bare or with options)."""
    if fn is not None:
        return Tool(fn, name=name, description=description)
    return lambda f: Tool(f, name=name, description=description)
