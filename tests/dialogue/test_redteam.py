"""Reward-hacking probes: a gameable toy env is flagged, built-in envs are not."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import agentrl
from agentrl import Task, ToolEnv, tool
from agentrl.checker import check_agent_env
from agentrl.redteam import PROBES, run_probes


@tool
def lookup(key: str) -> str:
    """Look up a secret number.

    Args:
        key: Any key.
    """
    return "42"


class GameableEnv(ToolEnv):
    """Grades by substring: any message that contains the answer anywhere wins."""

    def __init__(self, **kwargs: Any):
        super().__init__([lookup], max_turns=3, **kwargs)

    def sample_task(self, rng, options):
        return Task(prompt="What number does lookup return?", answer=str(int(rng.integers(1, 60))))

    def grade(self, task, answer):
        return 1.0 if task.answer in answer else 0.0

    def oracle_actions(self, task):
        return [f"<answer>{task.answer}</answer>"]


class TruncationRewardEnv(GameableEnv):
    """Pays a per-turn reward for any tool call, failed or not (shaping gone wrong)."""

    def grade(self, task, answer):
        return 1.0 if answer.strip() == task.answer else 0.0

    def turn_reward(self, parsed, results):
        return 0.1 * len(parsed.calls)


def test_gameable_env_is_flagged_with_the_probes_that_won():
    report = run_probes(GameableEnv(), episodes=3)
    won = {r.probe for r in report.results if r.exploit}
    assert report.flagged
    assert {"answer-spraying", "megabyte-answer"} <= won
    assert "no-op" not in won and "empty-answer" not in won
    assert "EXPLOITABLE by" in report.render() and "FLAGGED" in report.render()


def test_shaping_reward_for_failing_calls_is_flagged():
    report = run_probes(TruncationRewardEnv(), episodes=2)
    won = {r.probe for r in report.results if r.exploit}
    assert won == {"answer-in-tool-call", "tool-error-spam"}


def test_allowed_probes_are_reported_but_not_flagged():
    env = GameableEnv()
    env.redteam_allowed = {p.name: "test" for p in PROBES}
    report = run_probes(env, episodes=2)
    assert not report.flagged and "earned reward the env allows" in report.summary()


def test_checker_fails_a_gameable_env_and_passes_builtin_ones():
    agentrl.register_env("testing/Gameable-v0", f"{__name__}:GameableEnv")
    report = check_agent_env("testing/Gameable-v0", episodes=2)
    item = next(i for i in report.items if i.name == "red-team probes")
    assert not item.passed and "answer-spraying" in item.detail and not report.passed
    for env_id in ("agentrl/Calculator-v0", "agentrl/SQL-v0", "agentrl/Search-v0", "agentrl/Support-v0"):
        report = check_agent_env(env_id, episodes=2)
        assert report.passed, report.render()
        assert "earned no reward" in next(i.detail for i in report.items if i.name == "red-team probes")


def test_cli_check_redteam_table(capsys):
    out = subprocess.run([sys.executable, "-m", "agentrl.cli", "check", "--redteam", "agentrl/SQL-v0"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Red-team probes on agentrl/SQL-v0" in out.stdout and "Verdict: OK" in out.stdout
    from agentrl.cli import main

    agentrl.register_env("testing/Gameable-v0", f"{__name__}:GameableEnv")
    assert main(["check", "--redteam", "testing/Gameable-v0"]) == 1
    assert "EXPLOIT" in capsys.readouterr().out
