"""BFCL AST rules on hand-worked cases (no data needed)."""

from __future__ import annotations

import pytest

from agentrl.envs.bfcl.checker import check_call, check_calls, standardize
from agentrl.envs.bfcl.langs import from_java, from_javascript, language_schema, to_java

FN = {"name": "area", "parameters": {"type": "dict", "required": ["r"], "properties": {
    "r": {"type": "float"}, "unit": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
    "opts": {"type": "dict"}, "exact": {"type": "boolean"}}}}
ANSWER = {"area": {"r": [5.0], "unit": ["", "cm"], "tags": [["A b", "c"], ""],
                   "opts": [{"k": ["v"], "o": ["", 1]}, ""], "exact": ["", False]}}


def ok(args, answer=ANSWER, fn=FN, lang="python"):
    return check_call(fn, ("area", args), answer, lang)


def test_string_normalisation_is_bfcls():
    assert standardize("April 1, 2024") == "april12024"
    assert standardize("It's a-b_c*d^e/f.g") == 'it"sabcdefg'


def test_types_and_values():
    assert ok({"r": 5}).valid  # int accepted for float
    assert ok({"r": 5.0, "unit": "CM "}).valid  # string normalised
    assert ok({"r": 5.0, "unit": "mm"}).error_type == "value_error:string"
    assert ok({"r": "5"}).error_type == "type_error:simple"
    assert ok({"r": True}).error_type == "type_error:simple"  # bool is not a number
    assert ok({"unit": "cm"}).error_type == "simple_function_checker:missing_required"
    assert ok({"r": 5.0, "zz": 1}).error_type == "simple_function_checker:unexpected_param"
    assert ok({"r": 5.0, "tags": ["a-B", "C"]}).valid  # list elements normalised
    assert ok({"r": 5.0, "tags": ["c", "a b"]}).error_type == "value_error:list/tuple"  # order matters
    # With "" among the allowed lists BFCL skips the element types (then the value fails):
    assert ok({"r": 5.0, "tags": ["a b", 3]}).error_type == "value_error:list/tuple"
    strict = {"area": {"r": [5.0], "tags": [["a b", "c"]]}}
    assert ok({"r": 5.0, "tags": ["a b", 3]}, strict).error_type == "type_error:nested"
    assert ok({"r": 5.0, "opts": {"k": "V"}}).valid  # optional dict key may be left out
    assert ok({"r": 5.0, "opts": {"k": "v", "x": 1}}).error_type == "value_error:dict_key"
    assert ok({"r": 5.0, "exact": 0}).error_type == "type_error:simple"


def test_optional_without_empty_marker_must_be_given():
    answer = {"area": {"r": [5.0], "unit": ["cm"]}}
    assert ok({"r": 5.0}, answer).error_type == "simple_function_checker:missing_optional"


def test_variable_of_the_answers_type_skips_value_rules():
    answer = {"area": {"r": ["radius"]}}  # the answer names a variable
    assert ok({"r": "radius"}, answer).valid
    assert ok({"r": "other"}, answer).error_type == "value_error:others"


def test_parallel_is_order_free_and_counts_calls():
    fns = [FN]
    answer = [{"area": {"r": [1.0]}}, {"area": {"r": [2.0]}}]
    calls = [("area", {"r": 2.0}), ("area", {"r": 1.0})]
    assert check_calls("parallel", fns, calls, answer).valid
    assert check_calls("parallel", fns, calls[:1], answer).error_type.endswith("wrong_count")
    assert not check_calls("parallel", fns, [("area", {"r": 2.0})] * 2, answer).valid
    assert check_calls("simple_python", fns, calls, answer[:1]).error_type.endswith("wrong_count")


def test_java_values_are_source_strings():
    assert from_java("3.5f", "float") == 3.5 and from_java("3.5", "float") == "3.5"
    assert from_java("12L", "long") == 12 and from_java("true", "boolean") is True
    assert from_java("new int[]{1, 2}", "Array", "integer") == [1, 2]
    # BFCL keeps the quotes of String[] elements (a data quirk its checker has):
    assert from_java('new String[]{"a", "b"}', "Array", "String") == ['"a"', '"b"']
    assert from_java('new ArrayList<>(Arrays.asList("a", "b"))', "ArrayList", "String") == ["a", "b"]
    assert from_java('new HashMap<String, Object>() {{ put("k", 1); put("s", "x"); }}', "HashMap") == {"k": 1, "s": "x"}
    fn = {"name": "f", "parameters": {"required": ["n"], "properties": {"n": {"type": "integer"}}}}
    assert check_call(fn, ("f", {"n": "4"}), {"f": {"n": [4]}}, "java").valid
    assert check_call(fn, ("f", {"n": 4}), {"f": {"n": [4]}}, "java").error_type == "type_error:java"
    assert to_java([1, 2], "Array", "integer") == "new int[]{1, 2}"


def test_javascript_values():
    assert from_javascript("'x'", "String") == "x" and from_javascript("10n", "Bigint") == 10
    assert from_javascript("[1, 'a', true]", "array") == [1, "a", True]
    assert from_javascript("[[1, 2], [3]]", "array") == [[1, 2], [3]]
    assert from_javascript("{a: 1, b: 'x'}", "dict") == {"a": 1, "b": "x"}
    assert from_javascript("1e3", "float") == "1e3"  # JS floats are plain decimals in BFCL


def test_schema_conventions():
    java = language_schema({"name": "f", "description": "d", "parameters": {"type": "dict", "properties": {
        "xs": {"type": "Array", "items": {"type": "integer"}, "description": "numbers"}}}}, "java")
    spec = java["function"]["parameters"]["properties"]["xs"]
    assert spec["type"] == "string" and "Java Array type parameter in string representation" in spec["description"]
    assert "items" not in spec and "Java 8 SDK" in java["function"]["description"]
    py = language_schema(FN | {"description": ""}, "python")["function"]["parameters"]
    assert py["type"] == "object" and py["properties"]["opts"]["type"] == "object"
    assert py["properties"]["r"]["type"] == "number"


@pytest.mark.parametrize("category", ["simple_python", "multiple"])
def test_wrong_name_is_wrong(category):
    assert check_calls(category, [FN], [("areas", {"r": 5.0})], [{"area": {"r": [5.0]}}]).error_type.endswith("wrong_func_name")
