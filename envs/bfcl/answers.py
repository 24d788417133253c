"""Possible answers as concrete calls (the oracle), and the failure kind of a verdict."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from agentrl.envs.bfcl.checker import Call, Verdict
from agentrl.envs.bfcl.langs import to_java, to_javascript

__all__ = ["first_answer", "placeholder_call", "failure_kind", "FAILURE_KINDS"]

#: The failure taxonomy of a failed episode (agentrl eval reports it).
FAILURE_KINDS = (
    "no_call", "unparseable_call", "wrong_function", "wrong_args", "extra_call",
    "missing_call", "irrelevance", "tool_error", "limit_hit", "env_error",
)


def _pick(allowed: Any) -> tuple[bool, Any]:
    """(given, value): the first allowed value; ``""`` first means "leave it out"."""
    if not isinstance(allowed, list) or not allowed:
        return False, None
    first = allowed[0]
    return (False, None) if first == "" else (True, first)


def _concrete(value: Any, spec: dict[str, Any]) -> Any:
    """A checker-format value (dicts of allowed lists) made concrete (first choices)."""
    declared = spec.get("type")
    if isinstance(value, dict) and declared in ("dict", "HashMap"):
        out = {}
        for key, allowed in value.items():
            given, chosen = _pick(allowed)
            if given:
                out[key] = chosen
        return out
    if isinstance(value, list) and (spec.get("items") or {}).get("type") == "dict":
        return [_concrete(v, {"type": "dict"}) if isinstance(v, dict) else v for v in value]
    return value


def _render(value: Any, spec: dict[str, Any], language: str) -> Any:
    item = (spec.get("items") or {}).get("type")
    if language == "java":
        return to_java(value, spec.get("type", "any"), item)
    if language == "javascript":
        return to_javascript(value, spec.get("type", "any"), item)
    return value


def first_answer(functions: Sequence[dict[str, Any]], answer: Sequence[dict[str, Any]],
                 language: str = "python") -> list[Call]:
    """The calls of the first possible answer: each parameter's first allowed value
    (left out where that is ``""``), written in ``language``'s source form."""
    docs = {f["name"]: f for f in functions}
    calls: list[Call] = []
    for expected in answer:
        (name, allowed_by_param), = expected.items()
        props = docs.get(name, {}).get("parameters", {}).get("properties", {})
        args = {}
        for param, allowed in allowed_by_param.items():
            given, value = _pick(allowed)
            if given:
                spec = props.get(param, {})
                args[param] = _render(_concrete(value, spec), spec, language)
        calls.append((name, args))
    return calls


_PLACEHOLDER = {"string": "example", "integer": 1, "float": 1.0, "number": 1.0,
                "boolean": True, "array": [], "tuple": [], "dict": {}, "any": "example"}


def placeholder_call(function: dict[str, Any]) -> Call:
    """A call of ``function`` with a placeholder for each required parameter (relevance)."""
    params = function.get("parameters", {})
    props = params.get("properties", {})
    args = {}
    for name in params.get("required", []):
        spec = props.get(name, {})
        if "enum" in spec and spec["enum"]:
            args[name] = spec["enum"][0]
        else:
            args[name] = _PLACEHOLDER.get(spec.get("type", "string"), "example")
    return function["name"], args


def failure_kind(verdict: Verdict, calls: Sequence[Call], answer: Sequence[dict[str, Any]]) -> str:
    """The taxonomy entry of a failed AST check."""
    kind = verdict.error_type
    if kind.endswith("wrong_count"):
        return "extra_call" if len(calls) > len(answer) else "missing_call"
    if kind.endswith("wrong_func_name"):
        return "wrong_function"
    if kind.endswith("cannot_find_match"):
        got = Counter(name for name, _ in calls)
        want = Counter(next(iter(e)) for e in answer)
        return "wrong_function" if got != want else "wrong_args"
    return "wrong_args"
