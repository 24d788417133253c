"""BFCL's AST checker rules: does a list of calls match one of the possible answers?

A possible answer lists, per expected call, each parameter's allowed values
(``{"f": {"a": [1, 1.0], "unit": ["", "cm"]}}``; ``""`` among them means the parameter
may be left out). The rules, as BFCL v4 documents and applies them:

- simple categories: exactly one call; ``multiple``: as many calls as expected, the first
  checked against the expected function; ``parallel*``: as many calls as expected, matched
  in any order (each expected call, in turn, takes the first unused call that fits).
- a call fits when the name is the expected function's, every required parameter is
  given, every given parameter is declared *and* listed in the answer, every value has
  the declared type (Python ints are accepted for floats; a value of the answer's own type
  counts as a "variable" and skips the value rules), its value is allowed (strings compared
  after dropping spaces and ``,./-_*^``, lower-cased, ``'`` read as ``"``; lists element-wise
  the same; dicts key by key), and every listed parameter without ``""`` is given.
- Java/JavaScript values arrive as source strings and are converted first
  (:mod:`agentrl.envs.bfcl.langs`).

Every outcome is a :class:`Verdict` with a BFCL-style ``error_type`` on failure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentrl.envs.bfcl.langs import (
    JAVA_TYPES,
    JS_TYPES,
    UnsupportedTypeError,
    from_java,
    from_javascript,
)

__all__ = ["Verdict", "Call", "check_calls", "check_call", "standardize", "PY_TYPES"]

#: A decoded call: (function name, arguments).
Call = tuple[str, dict[str, Any]]
#: Declared Python-category type -> Python type.
PY_TYPES: dict[str, type] = {
    "string": str, "integer": int, "float": float, "boolean": bool, "array": list,
    "tuple": list, "dict": dict, "any": str,
}
_NESTED_PY = ("array", "tuple")
_NESTED_OTHER = ("Array", "ArrayList", "array")
_PUNCT = re.compile(r"[ ,./\-_*^]")


@dataclass(frozen=True)
class Verdict:
    """The checker's decision on one answer."""

    valid: bool
    """True when the calls match a possible answer."""
    error_type: str = ""
    """BFCL-style reason on failure (``simple_function_checker:wrong_func_name``, ...)."""
    message: str = ""
    """Human-readable detail."""


_OK = Verdict(True)


def _bad(error_type: str, message: str) -> Verdict:
    return Verdict(False, error_type, message)


def standardize(text: str) -> str:
    """BFCL's string normalisation: drop spaces and ``,./-_*^``, lower-case, ``'`` -> ``"``."""
    return _PUNCT.sub("", text).lower().replace("'", '"')


def _std(value: Any) -> Any:
    return standardize(value) if type(value) is str else value


def _answer_type(allowed: Sequence[Any]) -> type | None:
    """The type of the first allowed value that is not ``""`` (None when all are ``""``)."""
    for value in allowed:
        if value != "":
            return type(value)
    return None


def _type_ok(value: Any, allowed: Sequence[Any], expected: type, nested: type | None
             ) -> tuple[bool, bool]:
    """(type valid, value is a "variable") under BFCL's type rule (one nesting level)."""
    answer_type = _answer_type(allowed)
    variable = answer_type is not None and answer_type is not expected
    if type(value) is expected:
        if nested is None:
            return True, variable
        for option in allowed:
            if type(option) is not list:
                return True, variable  # e.g. "" (optional): nothing to check elements against
            if all(_type_ok(v, option, nested, None)[0] for v in value):
                return True, variable
        return False, variable
    if answer_type is not None and type(value) is answer_type:
        return True, True
    return False, variable


def _string_ok(value: str, allowed: Sequence[Any]) -> bool:
    return standardize(value) in [standardize(a) for a in allowed if type(a) is str]


def _list_ok(value: list[Any], allowed: Sequence[Any]) -> bool:
    std = [_std(v) for v in value]
    return any(std == [_std(a) for a in option] for option in allowed)


def _dict_ok(value: dict[str, Any], allowed: Sequence[Any]) -> tuple[bool, str]:
    reason = "dict_checker:unclear"
    for option in allowed:
        if option == "":
            continue
        reason = ""
        for key, item in value.items():
            if key not in option:
                reason = "value_error:dict_key"
                break
            if _std(item) not in [_std(a) for a in option[key]]:
                reason = "value_error:dict_value"
                break
        if not reason:
            for key, values in option.items():
                if key not in value and "" not in values:
                    reason = "value_error:dict_key"
                    break
        if not reason:
            return True, ""
    return False, reason


def _list_of_dicts_ok(value: list[Any], allowed: Sequence[Any]) -> tuple[bool, str]:
    reason = "list_dict_checker:unclear"
    for option in allowed:
        if len(value) != len(option):
            reason = "value_error:list_dict_count"
            continue
        for item, wanted in zip(value, option, strict=True):
            if type(item) is not dict:
                return False, "type_error:nested"
            ok, reason = _dict_ok(item, [wanted])
            if not ok:
                break
        else:
            return True, ""
    return False, reason


def _convert(value: Any, spec: dict[str, Any], language: str) -> tuple[Any, type, type | None]:
    """(value as Python, expected Python type, expected element type) for ``language``."""
    declared = spec.get("type")
    if language == "python":
        expected = PY_TYPES.get(declared)  # type: ignore[arg-type]
        if expected is None:
            raise UnsupportedTypeError(f"Python-category type {declared!r}")
        nested = PY_TYPES.get(spec["items"]["type"]) if declared in _NESTED_PY else None
        if declared == "tuple" and type(value) is tuple:
            value = list(value)
        if declared == "float" and type(value) is int:
            value = float(value)
        return value, expected, nested
    table, convert = (JAVA_TYPES, from_java) if language == "java" else (JS_TYPES, from_javascript)
    expected = table.get(declared)  # type: ignore[arg-type]
    if expected is None:
        raise UnsupportedTypeError(f"{language} type {declared!r}")
    if type(value) is not str:
        raise TypeError(f"expected {language} source as a string, got {type(value).__name__}")
    if declared in _NESTED_OTHER:
        item = spec["items"]["type"]
        if item not in table:
            raise UnsupportedTypeError(f"{language} element type {item!r}")
        return convert(value, declared, item), expected, table[item]
    return convert(value, declared), expected, None


def check_call(function: dict[str, Any] | None, call: Call, expected: dict[str, Any],
               language: str = "python") -> Verdict:
    """Check one call against one expected call ``{name: {param: [allowed, ...]}}``."""
    name, args = call
    (want_name, allowed_by_param), = expected.items()
    if function is None:
        return _bad("checker:missing_doc", f"no function doc for {want_name!r}")
    if name != function["name"]:
        return _bad("simple_function_checker:wrong_func_name",
                    f"expected {function['name']!r}, got {name!r}")
    if type(args) is not dict:
        return _bad("simple_function_checker:bad_arguments", "arguments are not an object")
    params = function.get("parameters", {})
    props = params.get("properties", {})
    for required in params.get("required", []):
        if required not in args:
            return _bad("simple_function_checker:missing_required", f"missing {required!r}")
    for param, raw in args.items():
        if param not in props or param not in allowed_by_param:
            return _bad("simple_function_checker:unexpected_param", f"unexpected {param!r}")
        allowed = allowed_by_param[param]
        try:
            value, expected_type, nested = _convert(raw, props[param], language)
        except TypeError as exc:
            return _bad(f"type_error:{'java' if language == 'java' else 'js'}", f"{param!r}: {exc}")
        except (UnsupportedTypeError, KeyError) as exc:
            return _bad("checker:unsupported_type", f"{param!r}: {exc} (BFCL's checker fails here too)")
        ok, variable = _type_ok(value, allowed, expected_type, nested)
        if not ok:
            kind = "type_error:nested" if nested is not None and type(value) is expected_type else "type_error:simple"
            return _bad(kind, f"{param!r}: {value!r} is not {props[param].get('type')}")
        if not variable:
            if expected_type is dict:
                ok, reason = _dict_ok(value, allowed)
                if not ok:
                    return _bad(reason, f"{param!r}: {value!r} not allowed")
                continue
            if expected_type is list and nested is dict:
                ok, reason = _list_of_dicts_ok(value, allowed)
                if not ok:
                    return _bad(reason, f"{param!r}: {value!r} not allowed")
                continue
            if expected_type is str:
                if not _string_ok(value, allowed):
                    return _bad("value_error:string", f"{param!r}: {value!r} not in {allowed!r}")
                continue
            if expected_type is list:
                if not _list_ok(value, allowed):
                    return _bad("value_error:list/tuple", f"{param!r}: {value!r} not in {allowed!r}")
                continue
        if value not in allowed:
            return _bad("value_error:others", f"{param!r}: {value!r} not in {allowed!r}")
    for param, allowed in allowed_by_param.items():
        if param not in args and "" not in allowed:
            return _bad("simple_function_checker:missing_optional",
                        f"{param!r} is listed in the answer without \"\" but was not given")
    return _OK


def _doc(functions: Sequence[dict[str, Any]], name: str) -> dict[str, Any] | None:
    for function in functions:
        if function.get("name") == name:
            return function
    return None


def check_calls(category: str, functions: Sequence[dict[str, Any]], calls: Sequence[Call],
                answer: Sequence[dict[str, Any]], language: str = "python") -> Verdict:
    """Check the decoded ``calls`` of one entry of an AST ``category`` against ``answer``."""
    if "parallel" in category:
        if len(calls) != len(answer):
            return _bad("parallel_function_checker_no_order:wrong_count",
                        f"expected {len(answer)} calls, got {len(calls)}")
        used: set[int] = set()
        for k, expected in enumerate(answer):
            doc = _doc(functions, next(iter(expected)))
            for index, call in enumerate(calls):
                if index not in used and check_call(doc, call, expected, language).valid:
                    used.add(index)
                    break
            else:
                return _bad("parallel_function_checker_no_order:cannot_find_match",
                            f"no call matches expected call {k} ({next(iter(expected))})")
        return _OK
    if "multiple" in category:
        if len(calls) != len(answer):
            return _bad("multiple_function_checker:wrong_count",
                        f"expected {len(answer)} calls, got {len(calls)}")
        return check_call(_doc(functions, next(iter(answer[0]))), calls[0], answer[0], language)
    if len(calls) != 1:
        return _bad("simple_function_checker:wrong_count", f"expected 1 call, got {len(calls)}")
    return check_call(functions[0], calls[0], answer[0], language)
