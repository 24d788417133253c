"""``agentrl/PythonInterpreter-v0``: data and math questions solved with a persistent Python.

Each episode has its own sandboxed interpreter (a :class:`~agentrl.session_env.SessionToolEnv`
session, taken from a warm pool). Data tasks preload a variable ``data`` (a list of records) into
that interpreter, so the agent has to inspect and compute with code over several turns;
math tasks need code because the numbers are too large to work out by hand. Tasks come
from the seed (same seed, same task). Reward 1 for the right final number, else 0. The
interpreter is closed at the end of every episode and on ``close()``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from agentrl.env import Task
from agentrl.errors import ConfigError
from agentrl.parsers import ToolCall
from agentrl.session_env import SessionToolEnv

# SessionToolEnv lives in agentrl.session_env; re-exported here for older imports.
__all__ = ["PythonInterpreterEnv", "SessionToolEnv", "FAMILIES", "make_task"]

_NAMES = ("Ada", "Bo", "Chen", "Dara", "Emil", "Farah", "Goran", "Hana", "Ines", "Jon")
_CITIES = ("Oslo", "Lima", "Pune", "Kyiv", "Accra", "Quito")


# -- tasks -----------------------------------------------------------------------------

def _records(rng: np.random.Generator) -> list[dict[str, Any]]:
    n = int(rng.integers(60, 121))
    return [{"id": i, "name": _NAMES[int(rng.integers(len(_NAMES)))],
             "city": _CITIES[int(rng.integers(len(_CITIES)))],
             "age": int(rng.integers(18, 81)),
             "score": round(float(rng.uniform(0, 100)), 1)} for i in range(n)]


def _data_intro(data: list[dict[str, Any]]) -> str:
    return (f"The Python session already holds a variable `data`: a list of {len(data)} dicts "
            "with keys 'id', 'name', 'city', 'age' and 'score'.")


def _mean_score(rng: np.random.Generator) -> dict[str, Any]:
    data = _records(rng)
    pick = data[int(rng.integers(len(data)))]
    city, age = pick["city"], pick["age"] - 1  # `pick` itself matches: never an empty mean
    rows = [r for r in data if r["city"] == city and r["age"] > age]
    answer = round(sum(r["score"] for r in rows) / len(rows), 2)
    return {"prompt": (f"{_data_intro(data)} What is the mean score of the people from {city} "
                       f"who are older than {age}? Round to 2 decimals."),
            "setup": f"data = {data!r}",
            "solution": (f"rows = [r for r in data if r['city'] == {city!r} and r['age'] > {age}]\n"
                         "print(round(sum(r['score'] for r in rows) / len(rows), 2))"),
            "answer": answer}


def _count_above(rng: np.random.Generator) -> dict[str, Any]:
    data = _records(rng)
    city = _CITIES[int(rng.integers(len(_CITIES)))]
    threshold = int(rng.integers(20, 80))
    answer = sum(1 for r in data if r["city"] == city and r["score"] > threshold)
    return {"prompt": (f"{_data_intro(data)} How many people from {city} have a score above "
                       f"{threshold}?"),
            "setup": f"data = {data!r}",
            "solution": (f"print(sum(1 for r in data if r['city'] == {city!r} "
                         f"and r['score'] > {threshold}))"),
            "answer": answer}


def _prime_sum(rng: np.random.Generator) -> dict[str, Any]:
    limit = int(rng.integers(2_000, 30_001))
    sieve = np.ones(limit, dtype=bool)  # sieve[k]: k is prime, for k < limit
    sieve[:2] = False
    for k in range(2, int(limit ** 0.5) + 1):
        if sieve[k]:
            sieve[k * k::k] = False
    answer = int(np.nonzero(sieve)[0].sum())
    return {"prompt": f"What is the sum of all prime numbers below {limit}?",
            "setup": "",
            "solution": (f"n = {limit}\nis_p = [True] * n\nis_p[0] = is_p[1] = False\n"
                         "for k in range(2, int(n ** 0.5) + 1):\n    if is_p[k]:\n"
                         "        is_p[k * k::k] = [False] * len(is_p[k * k::k])\n"
                         "print(sum(k for k in range(n) if is_p[k]))"),
            "answer": answer}


def _fib_mod(rng: np.random.Generator) -> dict[str, Any]:
    n, mod = int(rng.integers(500, 5_001)), int(rng.integers(1_000, 1_000_001))
    a, b = 0, 1  # F(0), F(1)
    for _ in range(n):
        a, b = b, (a + b) % mod
    return {"prompt": (f"Let F(0) = 0, F(1) = 1 and F(k) = F(k-1) + F(k-2). What is F({n}) "
                       f"modulo {mod}?"),
            "setup": "",
            "solution": (f"a, b = 0, 1\nfor _ in range({n}):\n    a, b = b, (a + b) % {mod}\n"
                         "print(a)"),
            "answer": a}


def _digit_sums(rng: np.random.Generator) -> dict[str, Any]:
    limit, d = int(rng.integers(1_000, 50_001)), int(rng.integers(3, 12))
    answer = sum(1 for k in range(1, limit + 1) if sum(map(int, str(k))) % d == 0)
    return {"prompt": (f"How many integers k with 1 <= k <= {limit} have a digit sum divisible "
                       f"by {d}?"),
            "setup": "",
            "solution": (f"print(sum(1 for k in range(1, {limit} + 1) "
                         f"if sum(map(int, str(k))) % {d} == 0))"),
            "answer": answer}


#: Task families by name (``reset(options={"family": name})`` picks one).
FAMILIES: dict[str, Callable[[np.random.Generator], dict[str, Any]]] = {
    "mean_score": _mean_score,
    "count_above": _count_above,
    "prime_sum": _prime_sum,
    "fib_mod": _fib_mod,
    "digit_sums": _digit_sums,
}


def make_task(rng: np.random.Generator, family: str | None = None) -> Task:
    """Draw one task (a random family unless ``family`` is given)."""
    if family is None:
        family = list(FAMILIES)[int(rng.integers(len(FAMILIES)))]
    if family not in FAMILIES:
        raise ConfigError(f"unknown task family {family!r}; choose one of {', '.join(FAMILIES)}")
    spec = FAMILIES[family](rng)
    return Task(prompt=spec["prompt"] + " Give the final number inside <answer></answer>.",
                answer=spec["answer"],
                id=f"{family}-{hashlib.sha1(spec['prompt'].encode()).hexdigest()[:10]}",
                metadata={"family": family, "setup": spec["setup"],
                          "solution": spec["solution"]})


def _number(text: str) -> float | None:
    from agentrl.envs.calculator import parse_number

    return parse_number(text)


class PythonInterpreterEnv(SessionToolEnv):
    """Math and data questions answered by running code in a persistent sandboxed session."""

    description = "Math/data questions solved with a persistent sandboxed Python session."
    instructions = (
        "You are a careful data analyst with a Python interpreter. Use the python tool to "
        "inspect data and compute; do not guess numbers you can compute."
    )

    def __init__(self, max_turns: int = 6, family: str | None = None, **kwargs: Any) -> None:
        if family is not None and family not in FAMILIES:
            raise ConfigError(f"unknown task family {family!r}; choose one of {', '.join(FAMILIES)}")
        super().__init__(max_turns=max_turns, **kwargs)
        self.family = family

    def sample_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        return make_task(rng, options.get("family", self.family))

    def _reset(self, options: dict[str, Any]) -> tuple[list[dict[str, str]], dict[str, Any]]:
        messages, info = super()._reset(options)
        self.run_setup(self._task().metadata["setup"])
        return messages, info

    def grade(self, task: Task, answer: str) -> float:
        value = _number(answer)
        if value is None:
            return 0.0
        if isinstance(task.answer, int):
            return 1.0 if value == task.answer else 0.0
        return 1.0 if abs(value - task.answer) < 0.006 else 0.0  # answers have 2 decimals

    def oracle_actions(self, task: Task) -> list[str]:
        call = ToolCall("python", {"code": task.metadata["solution"]})
        return [self.parser.render([call]), f"<answer>{task.answer}</answer>"]
