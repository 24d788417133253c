"""Validate any agentrl environment: gymnasium's checker, oracle episodes, the info keys of
the env contract, bad input.

``agentrl check ENV_ID`` prints the report; tests call :func:`check_agent_env` for every
registered id.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
from gymnasium.utils.env_checker import check_env

from agentrl.env import MAX_ACTION_CHARS, RESET_INFO_KEYS, STEP_INFO_KEYS
from agentrl.errors import EnvError, InvalidActionError, ResetNeededError
from agentrl.registry import make

__all__ = ["CheckItem", "CheckReport", "check_agent_env", "run_oracle_episode"]

# Actions an agent might produce by mistake; none may crash step().
BAD_ACTIONS = (
    "",
    "<tool_call>{not json</tool_call>",
    '<tool_call>{"name": "no_such_tool", "arguments": {}}</tool_call>',
    '<tool_call>{"name": 3}</tool_call><tool_call>',
    "[f(1, x=)]",
    "{" * 5000,
    "x" * MAX_ACTION_CHARS,
)


@dataclass
class CheckItem:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class CheckReport:
    env_id: str
    items: list[CheckItem] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(i.passed for i in self.items)

    def render(self) -> str:
        lines = [f"Checking {self.env_id}"]
        for i in self.items:
            mark = "PASS" if i.passed else "FAIL"
            lines.append(f"  [{mark}] {i.name}" + (f": {i.detail}" if i.detail else ""))
        verdict = "OK" if self.passed else "FAILED"
        lines.append(f"Verdict: {verdict} ({sum(i.passed for i in self.items)}/{len(self.items)} checks passed)")
        return "\n".join(lines)


def run_oracle_episode(env: gym.Env, seed: int, max_steps: int = 200) -> tuple[float, bool | None, int]:
    """Play one episode with the env's oracle; return (total reward, success, turns)."""
    env.reset(seed=seed)
    return _play_oracle(env, max_steps)


def _play_oracle(env: gym.Env, max_steps: int) -> tuple[float, bool | None, int]:
    total, info, turns = 0.0, {}, 0
    for turns in range(1, max_steps + 1):  # noqa: B007  (turns is returned)
        _, reward, terminated, truncated, info = env.step(env.unwrapped.oracle_action())
        total += reward
        if terminated or truncated:
            break
    return total, info.get("success"), turns


def _require_keys(info: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(info, dict):
        raise AssertionError(f"{where}: info is a {type(info).__name__}, not a dict")
    missing = [k for k in keys if k not in info]
    if missing:
        raise AssertionError(f"{where}: info lacks {', '.join(missing)} (the env contract: "
                             f"{', '.join(keys)})")


def _check_step_info(info: dict[str, Any], ended: bool) -> None:
    turn = info["turn"]
    if isinstance(turn, bool) or not isinstance(turn, int) or turn < 1:
        raise AssertionError(f"info['turn'] must be an int >= 1, got {turn!r}")
    if not isinstance(info["parsed"], bool):
        raise AssertionError(f"info['parsed'] must be a bool, got {info['parsed']!r}")
    if not isinstance(info["tool_calls"], list):
        raise AssertionError(f"info['tool_calls'] must be a list, got {info['tool_calls']!r}")
    success = info["success"]
    if ended and not isinstance(success, bool):
        raise AssertionError(f"info['success'] must be a bool when the episode ends, got {success!r}")
    if not ended and success is not None:
        raise AssertionError(f"info['success'] must be None before the episode ends, got {success!r}")


def _redteam(env: gym.Env, env_id: str, seed: int) -> str:
    from agentrl.redteam import run_probes

    result = run_probes(env, env_id=env_id, seed=seed)
    if result.flagged:
        raise AssertionError(result.summary())
    return result.summary()


def _item(report: CheckReport, name: str, fn: Callable[[], str]) -> None:
    """Run one check; AssertionError (gymnasium's checker) or our EnvError marks it failed."""
    try:
        report.items.append(CheckItem(name, True, fn()))
    except (AssertionError, EnvError, TypeError, ValueError, UserWarning, NotImplementedError) as exc:
        report.items.append(CheckItem(name, False, f"{type(exc).__name__}: {exc}"))


def check_agent_env(env_id: str, *, episodes: int = 3, seed: int = 0, redteam: bool = True,
                    **kwargs: Any) -> CheckReport:
    """Check ``env_id``; raises :class:`~agentrl.errors.EnvNotFoundError` for unknown ids.

    ``redteam``: also play the reward-hacking probes of :mod:`agentrl.redteam` (the check
    fails when one earns reward the env does not allow)."""
    report = CheckReport(env_id)
    env = make(env_id, **kwargs)
    raw = env.unwrapped

    def gym_checker() -> str:
        # gymnasium reports many problems as warnings; its render check of "human" mode
        # prints the conversation, which is noise in a report.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("error")
            check_env(raw, skip_close_check=True)
        return "gymnasium.utils.env_checker.check_env"

    def determinism() -> str:
        a, _ = raw.reset(seed=seed)
        b, _ = raw.reset(seed=seed)
        if a != b:
            raise AssertionError("same seed gave different first observations")
        return "same seed, same task"

    def oracle() -> str:
        # Tasks whose reset info carries ``oracle_defect`` (a benchmark's own ground truth
        # that fails its own checker) are skipped and counted, and the next seed is tried.
        results, skipped, s = [], 0, seed
        while len(results) < episodes and s < seed + 20 * episodes:
            _, info = raw.reset(seed=s)
            s += 1
            if info.get("oracle_defect"):
                skipped += 1
                continue
            results.append(_play_oracle(raw, 200))
        if not results:
            raise AssertionError(f"every one of {skipped} tasks tried has an oracle_defect")
        solved = sum(1 for _, ok, _ in results if ok)
        if solved != len(results):
            raise AssertionError(f"oracle solved {solved}/{len(results)} episodes")
        n = len(results)
        mean_turns = sum(t for *_, t in results) / n
        note = f" ({skipped} task(s) with a known ground-truth defect skipped)" if skipped else ""
        return f"{solved}/{n} solved, mean reward {sum(r for r, *_ in results) / n:.2f}, mean turns {mean_turns:.1f}{note}"

    def info_keys() -> str:
        steps = 0
        for i in range(episodes):
            _, info = raw.reset(seed=seed + i)
            _require_keys(info, RESET_INFO_KEYS, "reset")
            if info["success"] is not None:
                raise AssertionError(f"reset info has success={info['success']!r}; expected None")
            for _ in range(200):
                _, _, terminated, truncated, info = raw.step(raw.oracle_action())
                steps += 1
                _require_keys(info, STEP_INFO_KEYS, f"step {info.get('turn', '?')}")
                _check_step_info(info, terminated or truncated)
                if terminated or truncated:
                    break
        for action in BAD_ACTIONS[:4]:
            raw.reset(seed=seed)
            *_, terminated, truncated, info = raw.step(action)
            _require_keys(info, STEP_INFO_KEYS, f"step after bad action {action[:30]!r}")
            _check_step_info(info, terminated or truncated)
        return (f"reset info has {', '.join(RESET_INFO_KEYS)}; {steps + 4} step infos have "
                f"{', '.join(STEP_INFO_KEYS)} with the right types")

    def bad_actions() -> str:
        for action in BAD_ACTIONS:
            raw.reset(seed=seed)
            messages, reward, *_ = raw.step(action)
            if messages not in raw.observation_space:
                raise AssertionError(f"observation after bad action {action[:30]!r} is not in the observation space")
        return f"{len(BAD_ACTIONS)} malformed or huge actions handled as observations"

    def misuse() -> str:
        fresh = make(env_id, **kwargs).unwrapped
        try:
            fresh.step("hi")
        except ResetNeededError:
            pass
        else:
            raise AssertionError("step() before reset() did not raise ResetNeededError")
        fresh.reset(seed=seed)
        try:
            fresh.step(123)  # type: ignore[arg-type]
        except InvalidActionError:
            pass
        else:
            raise AssertionError("a non-string action did not raise InvalidActionError")
        fresh.close()
        return "step before reset and non-string actions raise clear errors"

    _item(report, "gymnasium env checker", gym_checker)
    _item(report, "seeded reset is deterministic", determinism)
    _item(report, f"oracle episodes ({episodes})", oracle)
    _item(report, "info keys of the env contract", info_keys)
    _item(report, "bad actions", bad_actions)
    _item(report, "API misuse", misuse)
    if redteam:
        _item(report, "red-team probes", lambda: _redteam(raw, env_id, seed))
    env.close()
    return report
