"""Java and JavaScript parameter values, as BFCL writes and reads them.

In BFCL's Java and JavaScript categories every parameter is passed as a *string* holding
source code in that language (``"new int[]{1, 2}"``, ``"3.5f"``, ``"true"``); the tool
schemas say so (:func:`language_schema`). Before checking, the string is turned into a
Python value with BFCL's conversion rules (:func:`from_java`, :func:`from_javascript`):
a string that does not fit the declared type stays a string (and then fails the check).
These rules follow the BFCL v4 documentation and data; they keep BFCL's quirks (e.g. the
elements of a Java ``String[]`` keep their quotes, numeric-looking JavaScript object
values become numbers), since scores must agree with BFCL's own checker.

:func:`to_java` / :func:`to_javascript` write a Python value as source code (the oracle).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

__all__ = [
    "JAVA_TYPES",
    "JS_TYPES",
    "UnsupportedTypeError",
    "from_java",
    "from_javascript",
    "to_java",
    "to_javascript",
    "language_schema",
]

#: Declared Java type -> the Python type its converted value has.
JAVA_TYPES: dict[str, type] = {
    "byte": int, "short": int, "integer": int, "long": int, "float": float, "double": float,
    "boolean": bool, "char": str, "Array": list, "ArrayList": list, "Set": set,
    "HashMap": dict, "Hashtable": dict, "Queue": list, "Stack": list, "String": str, "any": str,
}
#: Declared JavaScript type -> the Python type its converted value has.
JS_TYPES: dict[str, type] = {
    "String": str, "integer": int, "float": float, "Bigint": int, "Boolean": bool,
    "dict": dict, "array": list, "any": str,
}


class UnsupportedTypeError(Exception):
    """BFCL has no conversion for this declared type (its checker fails on such entries)."""


_INT = re.compile(r"-?\d+")
_JAVA_FLOAT = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?[fF]")
_JAVA_DOUBLE = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
_JAVA_LONG = re.compile(r"-?\d+[lL]")
_JS_FLOAT = re.compile(r"-?\d+(\.\d+)?")
_JS_BIGINT = re.compile(r"-?\d+n")


def _full(pattern: re.Pattern[str], text: str) -> bool:
    # BFCL anchors with ^...$, where $ also matches before a final newline.
    return pattern.fullmatch(text[:-1] if text.endswith("\n") else text) is not None


def _number(text: str) -> Any:
    """int, else float, else the text (Python's own int()/float() rules)."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def _java_literal(text: str) -> Any:
    """A Java literal of unknown type: boolean, "string", long, float, int or double."""
    if text in ("true", "false"):
        return text == "true"
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    if _full(_JAVA_LONG, text):
        return int(text[:-1])
    if _full(_JAVA_FLOAT, text):
        return float(text[:-1])
    return _number(text)


def from_java(text: str, declared: str, item: str | None = None) -> Any:
    """The Python value of the Java source ``text`` declared as ``declared`` (``item``:
    element type of ``Array``/``ArrayList``)."""
    if declared not in JAVA_TYPES:
        raise UnsupportedTypeError(f"Java type {declared!r}")
    if declared in ("byte", "short", "integer"):
        return int(text) if _full(_INT, text) else text
    if declared == "float":
        return float(text.rstrip("\n")[:-1]) if _full(_JAVA_FLOAT, text) else text
    if declared == "double":
        return float(text) if _full(_JAVA_DOUBLE, text) else text
    if declared == "long":
        return int(text.rstrip("\n")[:-1]) if _full(_JAVA_LONG, text) else text
    if declared == "boolean":
        return text == "true" if text in ("true", "false") else text
    if declared in ("char", "String", "any"):
        return text
    if declared == "Array":
        m = re.search(r"new\s+\w+\[\]\s*\{(.*?)\}", text)
        if not m:
            return text
        parts = [p.strip() for p in m.group(1).split(",") if p.strip()]
        return [from_java(p, item) if item else _java_literal(p) for p in parts]
    if declared == "ArrayList":
        return _java_arraylist(text, item)
    if declared == "HashMap":
        return _java_hashmap(text)
    raise UnsupportedTypeError(f"Java type {declared!r} has no conversion")


def _java_element(text: str, item: str | None) -> Any:
    if item in ("char", "String"):
        return text[1:-1]  # drop the quotes
    return from_java(text, item) if item else _java_literal(text)


def _java_arraylist(text: str, item: str | None) -> Any:
    m = re.search(r"new\s+ArrayList<\w*>\(Arrays\.asList\((.+?)\)\)", text)
    if m:
        return [_java_element(p.strip(), item) for p in m.group(1).split(",")]
    m = re.search(r"new\s+ArrayList<\w*>\(\)\s*\{\{\s*(.+?)\s*\}\}", text, re.DOTALL)
    if m:
        return [_java_element(a.strip(), item) for a in re.findall(r"add\((.+?)\)", m.group(1))]
    if re.search(r"new\s+ArrayList<\w*>\(\)", text):
        return []
    return text


def _java_hashmap(text: str) -> Any:
    m = re.search(r"new\s+HashMap<.*?>\s*\(\)\s*\{\s*\{?\s*(.*?)\s*\}?\s*\}", text, re.DOTALL)
    if m:
        return {k: _java_literal(v.strip())
                for k, v in re.findall(r"put\(\"(.*?)\",\s*(.*?)\)", m.group(1))}
    if re.search(r"new\s+HashMap<.*?>\s*\(\)", text):
        return {}
    return text


def _js_literal(text: str) -> Any:
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    if text[:1] in ("'", '"') and text.endswith(text[:1]):
        return text[1:-1]
    return _number(text)


def from_javascript(text: str, declared: str, item: str | None = None) -> Any:
    """The Python value of the JavaScript source ``text`` declared as ``declared``."""
    if declared not in JS_TYPES:
        raise UnsupportedTypeError(f"JavaScript type {declared!r}")
    if declared == "String":
        quoted = len(text) >= 1 and text[0] in "'\"" and text.endswith(text[0])
        return text[1:-1] if quoted else text
    if declared == "integer":
        return int(text) if _full(_INT, text) else text
    if declared == "float":
        return float(text) if _full(_JS_FLOAT, text) else text
    if declared == "Bigint":
        return int(text[:-1]) if _full(_JS_BIGINT, text) else text
    if declared == "Boolean":
        return text == "true" if text in ("true", "false") else text
    if declared == "any":
        return text
    if declared == "array":
        return _js_array(text.strip(), item)
    return _js_object(text.strip())


_JS_2D = re.compile(r"\[\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\]|\bnew\s+Array\(\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\)")
_JS_1D = re.compile(r"\[(.*?)\]|\bnew\s+Array\((.*?)\)")


def _js_array(code: str, item: str | None) -> Any:
    m = _JS_2D.match(code)
    if m:
        rows = []
        for k, inner in enumerate(re.findall(r"\[(.*?)\]", m.group(0))):
            inner = inner.strip()
            if k == 0 and inner.startswith("["):
                inner = inner[1:]
            rows.append([_js_literal(e) for e in inner.split(",")])
        return rows
    m = _JS_1D.match(code)
    if not m:
        return code
    body = (m.group(1) if m.group(1) is not None else m.group(2) or "").strip()
    parts = body.split(",") if body else []
    if not item:
        return [_js_literal(p) for p in parts]
    try:
        return [from_javascript(p.strip(), item) for p in parts]
    except UnsupportedTypeError:
        return code  # BFCL gives up on the whole array and keeps the text


def _js_object(code: str) -> Any:
    if code == "{}":
        return {}
    m = re.match(r"\{(.*?)\}", code)
    if not m:
        return code
    out: dict[str, Any] = {}
    for key, value in re.findall(r"([^:]+):\s*(.*?)(?:,\s*(?=[^,]+:)|$)", m.group(1)):
        key, value = key.strip().strip("'\""), value.strip()
        if value.startswith("[") and value.endswith("]"):
            out[key] = _js_array(value, None)
        elif value.startswith("{") and value.endswith("}"):
            out[key] = _js_object(value)
        else:
            out[key] = _js_literal(value.strip("'\""))
    return out


# -- writing values as source (the oracle) -------------------------------------------------
def _java_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def to_java(value: Any, declared: str, item: str | None = None) -> str:
    """Java source for ``value`` declared as ``declared`` (what a model should write)."""
    if isinstance(value, str) and declared in ("String", "char", "any"):
        return value
    if declared == "long":
        return f"{value}L"
    if declared == "float":
        return f"{value}f"
    if declared == "boolean":
        return "true" if value else "false"
    if declared == "Array" and isinstance(value, list):
        java_item = {"String": "String", "integer": "int", "char": "char", "any": "Object"}.get(item or "", "Object")
        return f"new {java_item}[]{{" + ", ".join(_java_scalar(v) for v in value) + "}"
    if declared == "ArrayList" and isinstance(value, list):
        if not value:
            return "new ArrayList<>()"
        suffix = "L" if item == "long" else ""
        return "new ArrayList<>(Arrays.asList(" + ", ".join(
            _java_scalar(v) + (suffix if not isinstance(v, str) else "") for v in value) + "))"
    if declared == "HashMap" and isinstance(value, dict):
        puts = " ".join(f'put("{k}", {_java_scalar(v)});' for k, v in value.items())
        return "new HashMap<String, Object>() {{ " + puts + " }}"
    if isinstance(value, bool | int | float):
        return _java_scalar(value)
    return str(value)


def _js_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'" if '"' in value else f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_js_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_js_scalar(v)}" for k, v in value.items()) + "}"
    return repr(value)


def to_javascript(value: Any, declared: str, item: str | None = None) -> str:
    """JavaScript source for ``value`` declared as ``declared``."""
    if isinstance(value, str) and declared != "String":
        return value  # a variable name (or code) where a value of another type is declared
    if declared == "Bigint":
        return f"{value}n"
    return _js_scalar(value)


def language_schema(function: dict[str, Any], language: str) -> dict[str, Any]:
    """A BFCL function doc as an OpenAI-style tool schema, with BFCL's conventions.

    Python: BFCL's types become JSON-schema types (``dict`` -> object, ``float`` -> number,
    ``tuple`` -> array, ``any`` -> string). Java/JavaScript: a language hint on the
    function, and every parameter becomes a string holding source code, with its declared
    type named in its description (as BFCL prompts do).
    """
    doc = copy.deepcopy(function)
    params = doc.setdefault("parameters", {"type": "dict", "properties": {}})
    params["type"] = "object"
    props = params.setdefault("properties", {})
    hint = {"java": " Note that the provided function is in Java 8 SDK syntax.",
            "javascript": " Note that the provided function is in JavaScript syntax."}.get(
                language, " Note that the provided function is in Python 3 syntax.")
    doc["description"] = doc.get("description", "") + hint
    lang = {"java": "Java", "javascript": "JavaScript"}.get(language)
    for spec in props.values():
        if lang is None:
            _openai_types(spec)
            continue
        declared = spec.get("type", "any")
        spec.setdefault("description", "")
        if declared == "any":
            spec["description"] += f" This parameter can be of any type of {lang} object in string representation."
        else:
            spec["description"] += f" This is {lang} {declared} type parameter in string representation."
        if declared in ("Array", "ArrayList", "array") and "items" in spec:
            spec["description"] += f" The list elements are of type {spec['items'].get('type')}; they are not in string representation."
            del spec["items"]
        if declared == "dict" and "properties" in spec:
            spec["description"] += (" The dictionary entries have the following schema; they are "
                                    "not in string representation. " + json.dumps(spec["properties"]))
            del spec["properties"]
        spec["type"] = "string"
    return {"type": "function", "function": doc}


_OPENAI = {"integer": "integer", "number": "number", "float": "number", "string": "string",
           "boolean": "boolean", "bool": "boolean", "array": "array", "list": "array",
           "dict": "object", "object": "object", "tuple": "array", "any": "string"}


def _openai_types(spec: dict[str, Any]) -> None:
    spec["type"] = _OPENAI.get(spec.get("type", "string"), "string")
    for sub in (spec.get("properties") or {}).values():
        if isinstance(sub, dict):
            _openai_types(sub)
    if isinstance(spec.get("items"), dict):
        _openai_types(spec["items"])
