"""Tamper-proof grading of a function against hidden tests.

Two fresh sandboxes per grading, connected only through this process:

* the **runner** loads the untrusted program and answers calls ``f(*args)`` with plain
  data (it never sees the tests);
* the **checker** runs the trusted test code, with the candidate replaced by a proxy
  whose answers are decoded into fresh built-in values, and reports a marker carrying a
  per-grading secret nonce after every ``assert`` that passed, then ``done``.

Reward needs ``done`` plus a pass marker for every ``assert`` statement of the test, read
from the checker's pipe, which the program cannot reach. So exit codes, ``sys.exit(0)``
or ``os._exit(0)`` before the asserts, objects with an always-true ``__eq__``, printed
"passed" lines, and files such as ``conftest.py``/``sitecustomize.py`` earn nothing: the
program shares neither a process, a file system nor an output channel with the tests.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources

from agentrl.errors import SandboxError
from agentrl.sandbox._channel import TIMEOUT, Channel
from agentrl.sandbox._proc import terminate
from agentrl.sandbox.base import Limits, SandboxBackend

__all__ = ["GradeResult", "FunctionGrader", "GradeTask"]


@dataclass(frozen=True)
class GradeResult:
    """The verdict of one grading."""

    passed: bool
    """True only if the test function returned and every assert statement provably passed."""
    asserts_total: int
    """Number of ``assert`` statements in the hidden test (0 if it never started)."""
    asserts_passed: int
    """Distinct ``assert`` statements with a valid pass marker."""
    calls: int
    """Calls made to the candidate function."""
    error: str
    """Why it failed ("" when passed)."""
    wall_time: float
    """Seconds the grading took."""

    @property
    def reward(self) -> float:
        """1.0 when passed, else 0.0."""
        return 1.0 if self.passed else 0.0


@dataclass(frozen=True)
class GradeTask:
    """One item for :meth:`FunctionGrader.grade_many`."""

    program: str
    """The untrusted program (defines the entry point)."""
    entry_point: str
    """Name of the function under test."""
    test: str
    """Trusted test code defining ``check(candidate)``."""
    context: str = ""
    """Trusted code run before the test in the checker (helpers the test refers to)."""
    check: str = "check"
    """Name of the test function."""


def _script(name: str) -> str:
    folder = resources.files("agentrl.sandbox")
    return folder.joinpath("_wire.py").read_text() + "\n" + folder.joinpath(name).read_text()


class FunctionGrader:
    """Grades programs against hidden tests on a backend that can ``spawn`` (bwrap, local).

    Args:
        backend: the sandbox backend.
        limits: limits of each of the two sandboxes; ``wall_time`` bounds the whole grading.
    """

    def __init__(self, backend: SandboxBackend, limits: Limits | None = None) -> None:
        if not hasattr(backend, "spawn"):
            raise SandboxError(f"grading needs a backend that can spawn processes; "
                               f"{backend.name!r} cannot (use 'bwrap')")
        self.backend = backend
        self.limits = limits or Limits()
        self._runner_src = _script("_grade_runner.py")
        self._checker_src = _script("_grade_checker.py")

    def grade(self, program: str, *, entry_point: str, test: str, context: str = "",
              check: str = "check") -> GradeResult:
        """Run the hidden ``test`` against ``program``'s ``entry_point``; see module doc."""
        start = time.monotonic()
        deadline = start + self.limits.wall_time
        nonce = secrets.token_hex(16)
        python = self.backend.python
        spawn = self.backend.spawn  # type: ignore[attr-defined]
        checker = spawn([python, "-I", "-S", "-c", self._checker_src], self.limits)
        try:
            runner = spawn([python, "-I", "-S", "-c", self._runner_src], self.limits)
        except SandboxError:
            terminate(checker)
            raise
        try:
            verdict = _Relay(Channel(checker), Channel(runner), nonce, deadline).run(
                {"nonce": nonce, "context": context, "test": test, "check": check,
                 "entry_point": entry_point},
                {"program": program, "entry_point": entry_point},
            )
        finally:
            terminate(checker)
            terminate(runner)
        done, total, passed, calls, error = verdict
        ok = done and total > 0 and len(passed) == total
        if done and not ok:
            error = f"only {len(passed)} of {total} asserts provably passed"
        return GradeResult(passed=ok, asserts_total=total, asserts_passed=len(passed),
                           calls=calls, error="" if ok else error,
                           wall_time=time.monotonic() - start)

    async def agrade(self, program: str, **kwargs: str) -> GradeResult:
        """Async :meth:`grade`."""
        return await asyncio.to_thread(self.grade, program, **kwargs)  # type: ignore[arg-type]

    def grade_many(self, tasks: Sequence[GradeTask], *, workers: int = 4) -> list[GradeResult]:
        """Grade many tasks concurrently (results in input order)."""
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return list(pool.map(
                lambda t: self.grade(t.program, entry_point=t.entry_point, test=t.test,
                                     context=t.context, check=t.check), tasks))


class _Relay:
    """Passes calls from the checker to the runner and collects the checker's markers."""

    def __init__(self, checker: Channel, runner: Channel, nonce: str, deadline: float) -> None:
        self.checker, self.runner = checker, runner
        self.nonce, self.deadline = nonce, deadline
        self.loaded: bool | None = None
        self.load_error = ""

    def run(self, checker_init: dict, runner_init: dict
            ) -> tuple[bool, int, set[int], int, str]:
        self.runner.write(runner_init)
        self.checker.write(checker_init)
        total, passed, calls = 0, set(), 0
        while True:
            message = self.checker.read(self.deadline)
            if message == TIMEOUT:
                return False, total, passed, calls, "time limit exceeded"
            if not isinstance(message, dict):
                return False, total, passed, calls, "the test ended without a verdict"
            if "call" in message:
                calls += 1
                if not self.checker.write(self._call(message["call"])):
                    # An answer too deep/large to re-encode is the candidate's failure.
                    self.checker.write({"error": "the program's answer cannot be passed on"})
            elif message.get("asserts") == self.nonce and _count(message.get("total")):
                total = message["total"]
            elif message.get("pass") == self.nonce and _count(message.get("assert")):
                passed.add(message["assert"])
            elif message.get("done") == self.nonce:
                return True, total, passed, calls, ""
            elif message.get("fail") == self.nonce:
                reason = _text(message.get("error"), "test failed")
                if self.load_error:
                    reason += f"; the program failed to load: {self.load_error}"
                return False, total, passed, calls, reason
            else:
                return False, total, passed, calls, "protocol violation by the test process"

    def _call(self, call: object) -> dict:
        if self.loaded is None:
            hello = self.runner.read(self.deadline)
            self.loaded = isinstance(hello, dict) and hello.get("loaded") is True
            if not self.loaded:
                error = hello.get("load_error") if isinstance(hello, dict) else None
                self.load_error = _text(error, "the program exited while loading")
        if not self.loaded:
            return {"error": "the program did not load"}
        if not self.runner.write(call):
            return {"error": "the program's process has ended"}
        reply = self.runner.read(self.deadline)
        if isinstance(reply, dict) and "value" in reply:
            return {"value": reply["value"]}
        if isinstance(reply, dict) and "error" in reply:
            return {"error": _text(reply["error"], "the program raised")}
        self.loaded = False
        self.load_error = "the program's process ended or answered garbage"
        return {"error": self.load_error}


def _count(value: object) -> bool:
    """A non-negative int field of a protocol message (never a bool or anything else)."""
    return type(value) is int and 0 <= value < 1 << 31


def _text(value: object, default: str) -> str:
    """A message's text field, at most 1000 characters; ``default`` if it is not a str."""
    return value[-1000:] if isinstance(value, str) and value else default
