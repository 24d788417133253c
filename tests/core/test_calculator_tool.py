"""The calculator tool: exact arithmetic by parsing; hostile input is refused, never evaluated."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentrl.tool import ToolError
from agentrl.tools.calculator import calculator, evaluate


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("(12 + 7) * 3", Fraction(57)),  # 19 * 3
        ("7 / 2", Fraction(7, 2)),
        ("-7 // 2", Fraction(-4)),  # floor division rounds down
        ("2 ** 10", Fraction(1024)),
        ("2 ^ 3", Fraction(8)),  # ^ is read as power, as people write it
        ("0.1 + 0.2", Fraction(3, 10)),  # exact, unlike floats
        ("17 % 5", Fraction(2)),
        ("2 ** -2", Fraction(1, 4)),
    ],
)
def test_exact_values(expr, value):
    assert evaluate(expr) == value


def test_output_format():
    assert calculator.run({"expression": "10 / 4"}).content == "2.5"
    assert calculator.run({"expression": "1 / 3"}).content == "0.333333333333"
    assert calculator.run({"expression": "6 * 7"}).content == "42"


@pytest.mark.parametrize(
    ("expr", "needle"),
    [
        ("__import__('os').system('true')", "unsupported syntax"),
        ("open('/etc/passwd')", "unsupported syntax"),
        ("x + 1", "unsupported syntax"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("10 ** 100000", "exponent too large"),
        ("(10 ** 999) ** 999", "too large"),
        ("1 +", "could not parse"),
        ("", "empty expression"),
        ("1" * 5000, "too long"),
        ("2 ** 0.5", "integer exponents"),
    ],
)
def test_bad_expressions_are_tool_errors(expr, needle):
    with pytest.raises(ToolError, match=needle):
        evaluate(expr)
    r = calculator.run({"expression": expr})
    assert not r.ok and needle in r.content


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_never_raises_anything_but_tool_error(text):
    r = calculator.run({"expression": text})  # run() turns ToolError into a result
    assert isinstance(r.content, str)


@settings(max_examples=200, deadline=None)
@given(st.integers(-10**6, 10**6), st.integers(-10**6, 10**6), st.sampled_from("+-*"))
def test_agrees_with_python_integer_arithmetic(a, b, op):
    expected = {"+": a + b, "-": a - b, "*": a * b}[op]
    assert evaluate(f"({a}) {op} ({b})") == expected
