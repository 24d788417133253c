"""Tools: schema derived from signature + docstring, argument validation, error results."""

from __future__ import annotations

from typing import Literal

import pytest

from agentrl.errors import ToolDefinitionError
from agentrl.tool import ToolError, tool


@tool
def book_flight(
    origin: str,
    destination: str,
    passengers: int = 1,
    cabin: Literal["economy", "business"] = "economy",
    max_price: float | None = None,
    tags: list[str] | None = None,
) -> dict:
    """Book a flight between two airports.

    Args:
        origin: IATA code of the departure airport.
        destination: IATA code of the arrival airport,
            e.g. "SFO".
        passengers: Number of seats.
        cabin: Cabin class.
        max_price: Highest acceptable price in USD.
        tags: Free-form labels.

    Returns:
        The booking.
    """
    if origin == destination:
        raise ToolError("origin and destination are the same")
    return {"from": origin, "to": destination, "seats": passengers, "cabin": cabin}


def test_schema_is_openai_function_format():
    s = book_flight.schema
    assert s["type"] == "function"
    fn = s["function"]
    assert fn["name"] == "book_flight"
    assert fn["description"] == "Book a flight between two airports."
    params = fn["parameters"]
    assert params["required"] == ["origin", "destination"]
    assert params["additionalProperties"] is False
    props = params["properties"]
    assert props["origin"] == {"type": "string", "description": "IATA code of the departure airport."}
    # continuation lines of a parameter description are joined
    assert props["destination"]["description"] == 'IATA code of the arrival airport, e.g. "SFO".'
    assert props["passengers"] == {"type": "integer", "description": "Number of seats.", "default": 1}
    assert props["cabin"]["enum"] == ["economy", "business"]
    assert props["cabin"]["type"] == "string"
    assert props["max_price"]["type"] == "number" and props["max_price"]["nullable"] is True
    assert props["tags"]["items"] == {"type": "string"}


def test_run_valid_call_returns_json_text():
    r = book_flight.run({"origin": "SFO", "destination": "JFK", "passengers": 2})
    assert r.ok and r.error_kind is None
    assert r.content == '{"from": "SFO", "to": "JFK", "seats": 2, "cabin": "economy"}'


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ({"origin": "SFO"}, "missing required argument(s): destination"),
        ({"origin": "SFO", "destination": "JFK", "seats": 2}, "unexpected argument(s): seats"),
        ({"origin": "SFO", "destination": "JFK", "passengers": "2"}, "passengers must be of type integer"),
        ({"origin": "SFO", "destination": "JFK", "passengers": True}, "passengers must be of type integer"),
        ({"origin": "SFO", "destination": "JFK", "cabin": "first"}, "cabin must be one of"),
        ({"origin": "SFO", "destination": "JFK", "tags": ["a", 3]}, "tags[1] must be of type string"),
        (["SFO", "JFK"], "arguments must be a JSON object"),
        ({"origin": None, "destination": "JFK"}, "origin must not be null"),
    ],
)
def test_invalid_arguments_come_back_as_error_results(args, needle):
    r = book_flight.run(args)
    assert not r.ok
    assert r.error_kind == "bad_arguments"
    assert needle in r.content


def test_float_parameter_accepts_int_and_null_when_optional():
    assert book_flight.run({"origin": "A", "destination": "B", "max_price": 300}).ok
    assert book_flight.run({"origin": "A", "destination": "B", "max_price": None}).ok


def test_tool_error_is_reported_to_model():
    r = book_flight.run({"origin": "SFO", "destination": "SFO"})
    assert not r.ok and r.error_kind == "tool_error"
    assert r.content == "Error: origin and destination are the same"


def test_definition_errors_are_clear():
    def no_hints(x):
        """Doc."""

    with pytest.raises(ToolDefinitionError, match="needs a type annotation"):
        tool(no_hints)

    def no_doc(x: int) -> int:
        return x

    with pytest.raises(ToolDefinitionError, match="needs a description"):
        tool(no_doc)

    def weird(x: set[int]) -> int:
        """Doc."""
        return 0

    with pytest.raises(ToolDefinitionError, match="unsupported parameter type"):
        tool(weird)


def test_decorator_options_override_name_and_description():
    @tool(name="sum2", description="Add.")
    def f(a: int, b: int) -> int:
        return a + b

    assert f.name == "sum2" and f.description == "Add."
    assert f(2, 3) == 5  # still callable as the plain function
    assert f.run({"a": 2, "b": 3}).content == "5"


_values = [None, True, False, 0, 1, -3, 2.5, float("nan"), "", "x", [], ["a"], [1], {}, {"k": "v"},
           {"k": 1}, "economy", "business", "first", (1,)]


def test_quick_validation_agrees_with_the_full_check():
    # validate() accepts plain values with a quick type test and sends anything else to the
    # full check; both must agree on every argument combination tried here.
    import itertools

    keys = ["origin", "destination", "passengers", "cabin", "max_price", "tags", "extra"]
    for a, b in itertools.product(_values, repeat=2):
        for k1, k2 in itertools.combinations(keys, 2):
            args = {"origin": "SFO", "destination": "LAX", k1: a, k2: b}
            assert book_flight.validate(args) == book_flight._full_check(args), args
    assert book_flight.validate({"destination": "LAX"}) == "missing required argument(s): origin"
    assert book_flight.validate(["SFO"]) == "arguments must be a JSON object, got list"


def test_a_subclass_that_skips_init_gets_the_full_check():
    from agentrl.tool import Tool

    class Raw(Tool):
        def __init__(self) -> None:  # sets the schema itself, as an MCP tool does
            self.name, self.description, self.fn = "raw", "d", lambda **kw: "ok"
            self.parameters = {"type": "object", "properties": {"n": {"type": "integer"}},
                               "required": ["n"], "additionalProperties": False}

    raw = Raw()
    assert raw.validate({}) == "missing required argument(s): n"
    assert raw.validate({"n": "x"}).startswith("n must be of type integer")
    assert raw.validate({"n": 3}) is None and raw.run({"n": 3}).ok
