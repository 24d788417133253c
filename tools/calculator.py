"""Safe arithmetic: the expression is parsed and walked, never passed to ``eval``.

Exact rational arithmetic (``fractions.Fraction``) so that word-problem answers are exact;
bounded exponents and sizes so that no expression can hang or exhaust memory.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from fractions import Fraction

from agentrl.tool import ToolError, tool

__all__ = ["calculator", "evaluate", "format_number"]

MAX_EXPRESSION_CHARS = 1000
MAX_EXPONENT = 1000
MAX_DIGITS = 4000  # bound on the size of any intermediate result

_BINOPS: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: lambda a, b: Fraction(a // b),
    ast.Mod: operator.mod,
}


def _pow(base: Fraction, exp: Fraction) -> Fraction:
    if exp.denominator != 1:
        raise ToolError("only integer exponents are supported")
    if abs(exp) > MAX_EXPONENT:
        raise ToolError(f"exponent too large (limit {MAX_EXPONENT})")
    if base == 0 and exp < 0:
        raise ToolError("division by zero")
    return base ** int(exp)


def _check_size(x: Fraction) -> Fraction:
    if max(abs(x.numerator), x.denominator).bit_length() > MAX_DIGITS * 3.33:
        raise ToolError("result too large")
    return x


def _eval(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return Fraction(str(node.value)) if isinstance(node.value, float) else Fraction(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        v = _eval(node.operand)
        return v if isinstance(node.op, ast.UAdd) else -v
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            return _check_size(_pow(left, right))
        fn = _BINOPS.get(type(node.op))
        if fn is None:
            raise ToolError(f"operator {type(node.op).__name__} is not supported")
        if isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod) and right == 0:
            raise ToolError("division by zero")
        return _check_size(fn(left, right))
    raise ToolError(
        f"unsupported syntax ({type(node).__name__}); use numbers, + - * / // % ** and parentheses"
    )


def evaluate(expression: str) -> Fraction:
    """Evaluate an arithmetic expression exactly; raises :class:`ToolError` on bad input."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression too long (limit {MAX_EXPRESSION_CHARS} characters)")
    text = expression.replace("^", "**").replace("×", "*").replace("÷", "/").strip()
    if not text:
        raise ToolError("empty expression")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ToolError(f"could not parse {expression!r}: {exc.__class__.__name__}") from None
    try:
        return _eval(tree)
    except RecursionError:
        raise ToolError("expression nested too deeply") from None


def format_number(x: Fraction) -> str:
    """Integers exactly; other rationals as a decimal with up to 12 significant digits."""
    if x.denominator == 1:
        return str(x.numerator)
    return f"{float(x):.12g}"


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly and return the result.

    Args:
        expression: Arithmetic with numbers, + - * / // % ** and parentheses, e.g. "(12 + 7) * 3".
    """
    return format_number(evaluate(expression))
