"""``agentrl/Calculator-v0``: arithmetic word problems solved with a calculator tool.

Problems are generated from the seed (same seed, same problem) at three difficulty
levels; answers are exact integers. Reward 1 for the exact final answer, else 0.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from agentrl.env import Task, ToolEnv
from agentrl.errors import ConfigError
from agentrl.parsers import ToolCall
from agentrl.tools.calculator import calculator

__all__ = ["CalculatorEnv", "parse_number"]

_NAMES = ("Ada", "Bo", "Chen", "Dara", "Emil", "Farah", "Goran", "Hana")
_ITEMS = ("apples", "books", "coins", "marbles", "stamps", "tickets")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def parse_number(text: str) -> float | None:
    """The last number in ``text`` (thousands separators allowed), or None."""
    found = _NUMBER.findall(text[-10_000:])  # the answer is at the end; bound the work
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def _problem(rng: np.random.Generator, level: int) -> tuple[str, str, int]:
    """Return (word problem, expression, its integer value).

    One draw of seven uniforms per task (a NumPy call costs more than the rest of the
    task); the value is computed alongside the expression, and the tests check it against
    the calculator's own evaluator.
    """
    u = rng.random(7).tolist()
    name = _NAMES[int(u[0] * len(_NAMES))]
    item = _ITEMS[int(u[1] * len(_ITEMS))]
    span = 10 ** (level + 1) - 2
    a, b = 2 + int(u[2] * span), 2 + int(u[3] * span)
    c, d = 2 + int(u[4] * span), 2 + int(u[5] * span)
    kind = int(u[6] * 3)
    if level == 1:
        if kind == 0:
            return (f"{name} has {a} {item} and gets {b} more. How many {item} does {name} "
                    "have now?"), f"{a} + {b}", a + b
        if kind == 1:
            big, small = max(a, b), min(a, b)
            return (f"{name} has {big} {item} and gives away {small}. How many are left?",
                    f"{big} - {small}", big - small)
        return (f"{name} buys {a} boxes with {b} {item} in each. How many {item} is that?",
                f"{a} * {b}", a * b)
    if level == 2:
        if kind == 0:
            return (f"{name} buys {a} packs of {b} {item} and already had {c}. "
                    f"How many {item} does {name} have?"), f"{a} * {b} + {c}", a * b + c
        if kind == 1:
            return (f"{a * b} {item} are shared equally among {a} friends, and each friend then "
                    f"gets {c} more. How many does each friend have?"), f"{a * b} / {a} + {c}", b + c
        return (f"{name} earns {a} {item} a day for {b} days and spends {c}. "
                f"How many {item} are left?"), f"{a} * {b} - {c}", a * b - c
    if kind == 0:
        return (f"A shop has {a} crates of {b} {item}. It sells {c} {item} and receives "
                f"{d} crates more. How many {item} does it have?"), \
            f"{a} * {b} - {c} + {d} * {b}", a * b - c + d * b
    if kind == 1:
        return (f"{name} splits {a * c} {item} into bags of {c}, then adds {b} bags and doubles "
                f"the number of bags. How many bags?"), f"({a * c} / {c} + {b}) * 2", (a + b) * 2
    return (f"{name} has {a} {item}, triples them, then loses {b} and gains {c}. "
            f"Squared, how much is the count minus {d}?"), \
        f"(3 * {a} - {b} + {c} - {d}) ** 2", (3 * a - b + c - d) ** 2


class CalculatorEnv(ToolEnv):
    """Arithmetic word problems; one calculator tool; reward for the exact final answer."""

    description = "Arithmetic word problems solved with a calculator tool (3 difficulty levels)."
    instructions = (
        "You are a careful assistant. Solve the arithmetic word problem. Use the calculator "
        "tool for the arithmetic."
    )

    def __init__(self, difficulty: int = 1, max_turns: int = 4, **kwargs: Any):
        if difficulty not in (1, 2, 3):
            raise ConfigError(f"difficulty must be 1, 2 or 3, got {difficulty}")
        super().__init__([calculator], max_turns=max_turns, **kwargs)
        self.difficulty = difficulty

    def sample_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        level = options.get("difficulty", self.difficulty)
        if level not in (1, 2, 3):
            raise ConfigError(f"difficulty must be 1, 2 or 3, got {level!r}")
        level = int(level)
        text, expression, value = _problem(rng, level)
        return Task(text, value, f"calc-{level}-{expression}",
                    {"expression": expression, "difficulty": level})

    def grade(self, task: Task, answer: str) -> float:
        value = parse_number(answer)
        return 1.0 if value is not None and value == task.answer else 0.0

    def oracle_actions(self, task: Task) -> list[str]:
        call = ToolCall("calculator", {"expression": task.metadata["expression"]})
        return [self.parser.render([call]), f"<answer>{task.answer}</answer>"]
