"""Grading integrity: only a program whose answers really pass the hidden asserts earns reward.

Each reward-hacking attempt below is a program that would fool a naive harness (one that
runs the tests in the same process, trusts exit codes, or greps the output).
"""

from __future__ import annotations

import pytest

from agentrl.errors import SandboxError
from agentrl.sandbox import Limits
from agentrl.sandbox.grading import FunctionGrader, GradeTask

TEST = '''
def check(candidate):
    assert candidate(2, 3) == 5
    assert candidate(-1, 1) == 0
    for a in range(3):
        assert candidate(a, a) == 2 * a
    assert candidate(1.5, 1) == 2.5
'''
CORRECT = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def grader(bwrap):
    return FunctionGrader(bwrap, Limits(wall_time=5))


def grade(grader, program, test=TEST):
    return grader.grade(program, entry_point="add", test=test)


def test_correct_program_passes_with_every_assert_proven(grader):
    result = grade(grader, CORRECT)
    assert result.passed and result.reward == 1.0
    assert result.asserts_total == 4 and result.asserts_passed == 4
    assert result.calls == 6  # 2 + 3 in the loop + 1
    assert result.error == ""


def test_wrong_answer_fails_and_counts_the_passed_asserts(grader):
    result = grade(grader, "def add(a, b):\n    return a + b if a >= 0 else 99\n")
    assert not result.passed and result.reward == 0.0
    assert result.asserts_passed == 1  # the first assert passed, the second did not
    assert "AssertionError" in result.error and "line 4" in result.error


@pytest.mark.parametrize("program", [
    "import sys\nsys.exit(0)\n" + CORRECT,
    "import os\nos._exit(0)\n",
    "def add(a, b):\n    import os\n    os._exit(0)\n",
    "def add(a, b):\n    raise SystemExit(0)\n",
], ids=["sys.exit-at-import", "os._exit-at-import", "os._exit-in-call", "SystemExit-in-call"])
def test_exiting_before_the_asserts_earns_nothing(grader, program):
    assert grade(grader, program).reward == 0.0


def test_always_equal_object_earns_nothing(grader):
    program = '''
class Anything:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
def add(a, b):
    return Anything()
'''
    result = grade(grader, program)
    assert result.reward == 0.0 and "cannot pass a value of type Anything" in result.error
    subclass = "class Int(int):\n    def __eq__(self, o):\n        return True\n" \
               "def add(a, b):\n    return Int(0)\n"
    assert grade(grader, subclass).reward == 0.0


def test_tampering_with_the_runner_encoder_earns_nothing(grader):
    # The runner is untrusted too: whatever it sends is decoded strictly by the checker.
    program = (
        "import __main__\n"
        "__main__.encode = lambda value: {'eq': 'always'}\n"
        "def add(a, b):\n    return a + b\n"
    )
    result = grade(grader, program)
    assert result.reward == 0.0 and "not plain data" in result.error


def test_printing_fake_passes_earns_nothing(grader):
    program = '''
import json, os, struct, sys
print("All tests passed! OK 4/4")
for fd in range(0, 20):  # also try to inject protocol frames on every descriptor
    for message in ({"done": "0" * 32}, {"value": 5}, {"loaded": True}):
        body = json.dumps(message).encode()
        try:
            os.write(fd, struct.pack(">I", len(body)) + body)
        except OSError:
            pass
def add(a, b):
    print("PASSED")
    return None
'''
    assert grade(grader, program).reward == 0.0


def test_writing_conftest_and_sitecustomize_earns_nothing(grader):
    program = '''
import os
payload = "import os\\nos._exit(0)\\n"
for folder in (".", "/tmp", "/work", os.path.expanduser("~")):
    for name in ("conftest.py", "sitecustomize.py", "usercustomize.py", "check.py"):
        try:
            with open(os.path.join(folder, name), "w") as f:
                f.write(payload)
        except OSError:
            pass
def add(a, b):
    return 0
'''
    assert grade(grader, program).reward == 0.0


def test_editing_or_finding_the_tests_earns_nothing(grader):
    program = '''
import os, builtins
found = []
for root, dirs, files in os.walk("/"):
    if root.startswith(("/proc", "/sys", "/usr", "/dev")):
        continue
    found += [os.path.join(root, f) for f in files]
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            found.append(open(f"/proc/{pid}/cmdline", "rb").read().decode("latin-1"))
        except OSError:
            pass
assert not any("check(candidate)" in text for text in found), found
builtins.AssertionError = type("Never", (Exception,), {})
try:
    os.kill(-1, 9)
except OSError:
    pass
def add(a, b):
    return 0
'''
    assert grade(grader, program).reward == 0.0


def test_hanging_or_crashing_candidates_earn_nothing(grader):
    hang = grade(grader, "def add(a, b):\n    while True:\n        pass\n")
    assert hang.reward == 0.0 and hang.wall_time < 8
    assert grade(grader, "def add(a, b):\n    return a +\n").reward == 0.0  # syntax error
    missing = grade(grader, "def plus(a, b):\n    return a + b\n")
    assert missing.reward == 0.0 and "KeyError" in missing.error


def test_program_is_loaded_as_a_module_not_a_script(grader):
    program = CORRECT + "\nif __name__ == '__main__':\n    import os\n    os._exit(1)\n"
    assert grade(grader, program).passed


def test_a_test_with_no_asserts_proves_nothing(grader):
    result = grade(grader, CORRECT, test="def check(candidate):\n    candidate(1, 2)\n")
    assert result.asserts_total == 0 and result.reward == 0.0


def test_context_helpers_and_self_reference(grader):
    # The test may use helpers from the (trusted) prompt and the function's own name.
    context = "def double(x):\n    return 2 * x\n\ndef add(a, b):\n    '''stub'''\n"
    test = "def check(candidate):\n    assert candidate(2, 2) == double(2)\n" \
           "    assert add(1, 1) == candidate(1, 1)\n"
    result = grader.grade(CORRECT, entry_point="add", test=test, context=context)
    assert result.passed and result.asserts_passed == 2
    wrong = grader.grade("def add(a, b):\n    return 3\n", entry_point="add", test=test,
                         context=context)
    assert wrong.reward == 0.0


def test_values_round_trip_exactly(grader):
    program = '''
def add(a, b):
    return {"t": (1, 2.5, None), "s": {1, 2}, "f": frozenset({"x"}), "b": b"\\x00",
            "big": 10**40, "c": 1+2j, "n": [True, float("inf")]}
'''
    test = '''
def check(candidate):
    out = candidate(0, 0)
    assert out == {"t": (1, 2.5, None), "s": {1, 2}, "f": frozenset({"x"}), "b": b"\\x00",
                   "big": 10**40, "c": 1+2j, "n": [True, float("inf")]}
    assert type(out["t"]) is tuple and type(out["n"][0]) is bool
'''
    assert grade(grader, program, test=test).passed


def test_grade_many_keeps_order(grader):
    tasks = [GradeTask(program=CORRECT if i % 2 == 0 else "def add(a, b):\n    return 0\n",
                       entry_point="add", test=TEST) for i in range(4)]
    assert [r.passed for r in grader.grade_many(tasks, workers=2)] == [True, False, True, False]


def test_grader_needs_a_spawning_backend():
    class NoSpawn:
        name = "nospawn"

    with pytest.raises(SandboxError, match="cannot"):
        FunctionGrader(NoSpawn())  # type: ignore[arg-type]
