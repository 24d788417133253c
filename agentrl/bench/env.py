"""``agentrl bench env``: per-step and per-reset overhead of each built-in env, beside GEM's.

Every env is driven by its own oracle (the actions are computed outside the timed call);
each ``reset`` and each ``step`` call is timed on its own (``perf_counter_ns``) and the
table gives p50/p99 in µs per kind of call:

* ``reset (seen seed)`` -- ``reset(seed=s)`` with ``s`` cycling over ``--seeds`` seeds, as
  in group sampling (every seed is used ``group_size`` times); ``reset (new seed)`` -- a
  seed never used before in the process;
* ``tool step`` -- a turn with a tool call (parse, validate, run the tool, tool message);
  ``answer step`` -- the final answer (extract, grade); ``step`` -- a GuessNumber guess.

GEM (``gem-llm``, the optional ``bench`` extra) is measured in the same process on the
same kind of work when it imports, interleaved with agentrl in chunks of 5 episodes so
that a change of machine load during the run hits both alike:

* GuessNumber: GEM's own ``GuessTheNumberEnv`` (range 1..100, 10 turns, as ours), driven
  by the same binary search with GEM's ``\\boxed{}`` answers;
* Calculator: GEM has no calculator env, so the GEM row is GEM's ``ToolEnvWrapper`` (its
  tool-use machinery) around a minimal GEM ``Env`` with the same level-1 word problems,
  and a GEM ``BaseTool`` that reads the same ``<tool_call>{json}</tool_call>`` with
  ``json.loads`` and runs the same exact evaluator
  (:func:`agentrl.tools.calculator.evaluate`). The difference is framework overhead:
  ours validates the arguments against the tool's schema, records every call, keeps the
  conversation and checks the API's use; the GEM tool checks only what it needs.

The sandboxed envs (PythonInterpreter, HumanEval) are dominated by the sandbox (ms per
call); they run fewer episodes (``--sandbox-episodes``) and have no GEM row.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

import agentrl  # noqa: F401  (registers the ids)
from agentrl.errors import ConfigError

__all__ = ["Row", "measure_agentrl", "measure_gem", "measure_pair", "run_benchmark",
           "format_table", "add_arguments", "main"]

CORE_ENVS = ("agentrl/Calculator-v0", "agentrl/GuessNumber-v0")
SANDBOX_ENVS = ("agentrl/PythonInterpreter-v0", "agentrl/HumanEval-v0")


@dataclass(frozen=True)
class Row:
    """One measured kind of call."""

    framework: str
    """``agentrl`` or ``gem``."""
    env: str
    """The agentrl env id this row measures (GEM rows: the agentrl env they mirror)."""
    op: str
    """``reset (seen seed)``, ``reset (new seed)``, ``tool step``, ``answer step`` or ``step``."""
    n: int
    """Calls timed."""
    p50_us: float
    """Median µs per call."""
    p99_us: float
    """99th percentile µs per call."""


def _pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[k] / 1000.0


def _rows(framework: str, env: str, samples: dict[str, list[int]]) -> list[Row]:
    return [Row(framework, env, op, len(v), _pct(v, 0.5), _pct(v, 0.99))
            for op, v in samples.items() if v]


Samples = dict[str, list[int]]


def _agentrl_episodes(env_id: str, seeds: int, samples: Samples) -> Iterator[None]:
    """Drive ``env_id`` with its oracle, one episode per ``next()``; time every call."""
    env = gym.make(env_id).unwrapped
    clock = time.perf_counter_ns
    new_seed = 10_000_000 + 1_000_000 * (CORE_ENVS + SANDBOX_ENVS).index(env_id)  # unused seeds
    tool_env = hasattr(env, "tools")
    try:
        for s in range(seeds):  # warm up: every seen seed once, code paths hot
            env.reset(seed=s)
        ep = 0
        while True:
            t0 = clock()
            env.reset(seed=ep % seeds)
            samples["reset (seen seed)"].append(clock() - t0)
            ep += 1
            for _ in range(50):
                action = env.oracle_action()
                t0 = clock()
                _, _, terminated, truncated, info = env.step(action)
                dt = clock() - t0
                kind = ("tool step" if info["tool_calls"] else
                        "answer step" if tool_env else "step")
                samples.setdefault(kind, []).append(dt)
                if terminated or truncated:
                    break
            new_seed += 1
            t0 = clock()
            env.reset(seed=new_seed)
            samples["reset (new seed)"].append(clock() - t0)
            yield
    finally:
        env.close()


def _interleave(drivers: dict[str, Iterator[None]], episodes: int, chunk: int = 5) -> None:
    """Run ``episodes`` episodes of every driver, alternating in chunks, so that a change in
    machine load during the run hits every framework alike."""
    gc.collect()
    done = 0
    while done < episodes:
        n = min(chunk, episodes - done)
        for driver in drivers.values():
            for _ in range(n):
                next(driver)
        done += n
    for driver in drivers.values():
        driver.close()  # type: ignore[attr-defined]


def measure_agentrl(env_id: str, episodes: int, seeds: int) -> list[Row]:
    """Drive ``env_id`` with its oracle for ``episodes`` episodes; time every reset and step."""
    samples: Samples = {"reset (seen seed)": [], "reset (new seed)": []}
    _interleave({"agentrl": _agentrl_episodes(env_id, seeds, samples)}, episodes)
    return _rows("agentrl", env_id, samples)


# -- GEM -----------------------------------------------------------------------------

_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


def _gem_calculator_env() -> Any:
    """GEM's ToolEnvWrapper around a minimal GEM env with the same word problems."""
    import random

    from gem.core import Env
    from gem.tools.base_tool import BaseTool
    from gem.tools.tool_env_wrapper import ToolEnvWrapper

    from agentrl.envs.calculator import _ITEMS, _NAMES, parse_number
    from agentrl.tools.calculator import evaluate, format_number

    class Problems(Env):
        def reset(self, seed: int | None = None) -> tuple[str, dict[str, Any]]:
            super().reset(seed)
            name, item = random.choice(_NAMES), random.choice(_ITEMS)
            a, b = random.randint(2, 99), random.randint(2, 99)
            self.expression = f"{a} + {b}"
            self.answer = a + b
            return (f"{name} has {a} {item} and gets {b} more. How many {item} does "
                    f"{name} have now?"), {}

        def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
            value = parse_number(action)
            return "", 1.0 if value == self.answer else 0.0, True, False, {}

    class Calculator(BaseTool):
        tool_type = "calculator"
        name = "calculator"

        def instruction_string(self) -> str:
            return ('Call the calculator with <tool_call>{"name": "calculator", '
                    '"arguments": {"expression": "..."}}</tool_call>.')

        def execute_action(self, action: str) -> tuple[bool, bool, str, str]:
            m = _CALL.search(action)
            if m is None:
                return False, True, "", action
            try:
                call = json.loads(m.group(1))
                expression = call["arguments"]["expression"]
                return True, False, format_number(evaluate(expression)), action[: m.end()]
            except (ValueError, KeyError, TypeError, agentrl.ToolError) as exc:
                return True, True, f"Error: {exc}", action[: m.end()]

    return ToolEnvWrapper(Problems(), [Calculator()], max_tool_uses=10)


def _gem_calculator(seeds: int, samples: Samples) -> Iterator[None]:
    env = _gem_calculator_env()
    clock = time.perf_counter_ns
    for s in range(seeds):
        env.reset(seed=s)
    new_seed, ep = 20_000_000, 0
    while True:
        t0 = clock()
        env.reset(seed=ep % seeds)
        samples["reset (seen seed)"].append(clock() - t0)
        ep += 1
        inner = env.env
        call = json.dumps({"name": "calculator", "arguments": {"expression": inner.expression}})
        actions = [f"<tool_call>\n{call}\n</tool_call>", f"<answer>{inner.answer}</answer>"]
        for kind, action in zip(("tool step", "answer step"), actions, strict=True):
            t0 = clock()
            env.step(action)
            samples.setdefault(kind, []).append(clock() - t0)
        new_seed += 1
        t0 = clock()
        env.reset(seed=new_seed)
        samples["reset (new seed)"].append(clock() - t0)
        yield


def _gem_guess(seeds: int, samples: Samples) -> Iterator[None]:
    from gem.envs.game_env.guess_the_number import GuessTheNumberEnv

    env = GuessTheNumberEnv(min_number=1, max_number=100, max_turns=10)
    clock = time.perf_counter_ns
    for s in range(seeds):
        env.reset(seed=s)
    new_seed, ep = 30_000_000, 0
    while True:
        t0 = clock()
        env.reset(seed=ep % seeds)
        samples["reset (seen seed)"].append(clock() - t0)
        ep += 1
        lo, hi = 1, 100
        for _ in range(10):
            guess = (lo + hi) // 2
            action = f"\\boxed{{{guess}}}"
            t0 = clock()
            obs, _, terminated, truncated, _ = env.step(action)
            samples.setdefault("step", []).append(clock() - t0)
            if terminated or truncated:
                break
            if "higher" in obs:
                lo = guess + 1
            else:
                hi = guess - 1
        new_seed += 1
        t0 = clock()
        env.reset(seed=new_seed)
        samples["reset (new seed)"].append(clock() - t0)
        yield


_GEM: dict[str, Callable[[int, Samples], Iterator[None]]] = {
    "agentrl/Calculator-v0": _gem_calculator,
    "agentrl/GuessNumber-v0": _gem_guess,
}


def gem_version() -> str | None:
    """The installed ``gem-llm`` version, or None when GEM does not import."""
    try:
        import gem  # noqa: F401
    except ImportError:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gem-llm")
    except PackageNotFoundError:
        return "unknown"


def measure_gem(env_id: str, episodes: int, seeds: int) -> list[Row]:
    """GEM's equivalent of ``env_id`` (see the module docstring); [] when it has none."""
    return measure_pair(env_id, episodes, seeds)[1]


def measure_pair(env_id: str, episodes: int, seeds: int,
                 gem: bool = True) -> tuple[list[Row], list[Row]]:
    """agentrl's ``env_id`` and GEM's equivalent (when ``gem`` and there is one), run
    interleaved in chunks of episodes; returns (agentrl rows, GEM rows)."""
    ours: Samples = {"reset (seen seed)": [], "reset (new seed)": []}
    theirs: Samples = {"reset (seen seed)": [], "reset (new seed)": []}
    drivers = {"agentrl": _agentrl_episodes(env_id, seeds, ours)}
    fn = _GEM.get(env_id) if gem else None
    if fn is not None:
        drivers["gem"] = fn(seeds, theirs)
    _interleave(drivers, episodes)
    return _rows("agentrl", env_id, ours), _rows("gem", env_id, theirs) if fn else []


def run_benchmark(*, episodes: int = 2000, sandbox_episodes: int = 8, seeds: int = 64,
                  gem: bool = True, sandbox: bool = True) -> dict[str, Any]:
    """Measure every built-in env (and GEM's equivalents); return the JSON report."""
    if episodes < 1 or sandbox_episodes < 1 or seeds < 1:
        raise ConfigError("episodes, sandbox_episodes and seeds must be >= 1")
    gem_ver = gem_version() if gem else None
    rows: list[Row] = []
    for env_id in CORE_ENVS:
        ours, theirs = measure_pair(env_id, episodes, seeds, gem=gem_ver is not None)
        rows += ours + theirs
    if sandbox:
        for env_id in SANDBOX_ENVS:
            rows += measure_agentrl(env_id, sandbox_episodes, min(seeds, sandbox_episodes))
    return {
        "benchmark": "env",
        "episodes": episodes,
        "sandbox_episodes": sandbox_episodes,
        "seeds": seeds,
        "gem_version": gem_ver,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "rows": [asdict(r) for r in rows],
    }


def format_table(report: dict[str, Any]) -> str:
    """The human-readable table: agentrl beside GEM for each (env, op)."""
    rows = [Row(**r) for r in report["rows"]]
    gem = {(r.env, r.op): r for r in rows if r.framework == "gem"}
    head = (f"{'env':<29} {'op':<18} {'n':>6} {'p50 µs':>8} {'p99 µs':>8} "
            f"{'GEM p50':>8} {'GEM p99':>8} {'p50 ratio':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.framework != "agentrl":
            continue
        g = gem.get((r.env, r.op))
        extra = (f" {g.p50_us:>8.1f} {g.p99_us:>8.1f} {r.p50_us / g.p50_us:>8.2f}x" if g
                 else f" {'-':>8} {'-':>8} {'-':>9}")
        lines.append(f"{r.env:<29} {r.op:<18} {r.n:>6} {r.p50_us:>8.1f} {r.p99_us:>8.1f}{extra}")
    version = report.get("gem_version")
    lines.append(f"GEM: gem-llm {version}" if version else
                 "GEM: not installed (pip install gem-llm for the side-by-side columns)")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--episodes", type=int, default=2000,
                        help="oracle episodes per core env (default 2000)")
    parser.add_argument("--sandbox-episodes", type=int, default=8,
                        help="episodes per sandboxed env (default 8)")
    parser.add_argument("--seeds", type=int, default=64,
                        help="distinct seeds the 'seen seed' resets cycle over (default 64)")
    parser.add_argument("--no-gem", action="store_true", help="skip the GEM rows")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="skip PythonInterpreter and HumanEval (they need bwrap)")
    parser.add_argument("--json", "--out", dest="json", type=Path, default=None,
                        help="write the JSON report here")


def main(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table, write the JSON when asked; exit code 0."""
    report = run_benchmark(episodes=args.episodes, sandbox_episodes=args.sandbox_episodes,
                           seeds=args.seeds, gem=not args.no_gem, sandbox=not args.no_sandbox)
    print(format_table(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
