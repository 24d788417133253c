"""agentrl eval end to end: through the streaming collector with a scripted policy, the
oracle CLI, the three report forms, compare."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agentrl.errors import DataUnavailableError

try:
    from agentrl.envs.bfcl.data import wheel_root

    wheel_root()
except DataUnavailableError as exc:
    pytest.skip(f"BFCL data unavailable: {exc}", allow_module_level=True)

import agentrl.envs  # noqa: F401,E402
from agentrl.cli import main as cli_main  # noqa: E402
from agentrl.envs.bfcl.single import BFCLSingleTurnEnv  # noqa: E402
from agentrl.eval.report import build_report, to_markdown  # noqa: E402
from agentrl.eval.run import Progress, evaluate  # noqa: E402
from agentrl.policy.fake import FakePolicy  # noqa: E402
from agentrl.rollout.config import RolloutConfig  # noqa: E402

ENV = "agentrl/BFCL-simple_javascript-v0"


@pytest.fixture(scope="module")
def tok(tiny_model_path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


def _scripted(env: BFCLSingleTurnEnv) -> tuple[dict[str, str], set[str]]:
    """Question -> reply: the oracle's answer for every other entry, prose for the rest."""
    replies, solved = {}, set()
    for k, task_id in enumerate(env.task_ids()):
        env.reset(options={"task_id": task_id})
        question = env.entry["question"][0][-1]["content"]
        if k % 2 == 0:
            replies[question] = env.oracle_action()
            solved.add(task_id)
        else:
            replies[question] = "I think you should do it by hand."
    return replies, solved


def test_eval_covers_every_task_k_times_and_scores_what_the_env_says(tok):
    env = BFCLSingleTurnEnv("simple_javascript")
    replies, solved = _scripted(env)

    def reply(prompt: str) -> str:
        return next(r for q, r in replies.items() if q in prompt)

    policy = FakePolicy(tok, reply, delay_s=0.001)
    lines: list[str] = []

    class Sink:
        def write(self, text: str) -> None:
            lines.append(text)

        def flush(self) -> None:
            pass

    run = evaluate(policy, [ENV], samples=2, config=RolloutConfig(max_context=8192, concurrency=8),
                   progress=Progress(stream=Sink(), every_s=0.0))
    records = run.records[ENV]
    assert Counter(r.task_id for r in records) == {t: 2 for t in env.task_ids()}
    assert {r.task_id for r in records if r.success} == solved
    assert all(r.failure == "no_call" for r in records if not r.success)
    assert any("success so far" in line for line in lines)
    report = build_report(run, {"policy": "fake", "command": "test"})
    s = report["envs"][ENV]
    assert s["success_rate"] == pytest.approx(len(solved) / 50)
    assert s["pass_at_k"]["2"] == s["pass_hat_k"]["2"] == pytest.approx(len(solved) / 50)
    assert s["model_tokens"] > 0 and "simple_javascript" in to_markdown(report)


def test_oracle_cli_writes_reports_and_compare_tells_noise_from_change(tmp_path, capsys):
    envs = "agentrl/BFCL-simple_java-v0,agentrl/BFCL-multi_turn_base-v0"
    out = tmp_path / "oracle"
    assert cli_main(["eval", "--oracle", "--envs", envs, "--episodes", "40", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    java = report["envs"]["agentrl/BFCL-simple_java-v0"]
    assert java["episodes"] == 40 and java["failures"] == {"wrong_args": 2}  # simple_java_35/36: BFCL keeps String[] quotes
    assert report["envs"]["agentrl/BFCL-multi_turn_base-v0"]["success_rate"] == 1.0
    assert report["bfcl"]["partial"] and "<svg" in (out / "report.html").read_text()
    assert report["meta"]["command"].startswith("agentrl eval --oracle --envs agentrl/BFCL-simple_java-v0")
    assert "| simple_java | 40 | 95.0 |" in (out / "report.md").read_text()

    worse = json.loads(json.dumps(report))  # B: every multi-turn task fails
    for rec in worse["records"]["agentrl/BFCL-multi_turn_base-v0"]:
        rec["success"] = False
    worse["envs"]["agentrl/BFCL-multi_turn_base-v0"]["success_rate"] = 0.0
    (tmp_path / "worse.json").write_text(json.dumps(worse))
    capsys.readouterr()
    assert cli_main(["eval", "compare", str(out), str(tmp_path / "worse.json")]) == 0
    table = capsys.readouterr().out
    assert "| agentrl/BFCL-multi_turn_base-v0 | 40 | 100.0 | 0.0 | -100.0 | [-100.0, -100.0] | real difference |" in table
    assert "| agentrl/BFCL-simple_java-v0 | 40 | 95.0 | 95.0 | +0.0 | [+0.0, +0.0] | within noise |" in table


def test_eval_cli_errors(capsys):
    assert cli_main(["eval", "--envs", "bfcl"]) == 2
    assert "exactly one of --policy" in capsys.readouterr().err
    assert cli_main(["eval", "--oracle", "--envs", "nosuch"]) == 2
    assert cli_main(["eval", "compare", "a"]) == 2


def test_a_policy_failure_is_not_blamed_on_the_env(tok):
    """An episode whose policy raised (an engine that died) is a policy_error, not env_error."""
    from agentrl.eval.score import record_of
    from agentrl.rollout import collect_sync

    policy = FakePolicy(tok, ["<answer>8</answer>"])  # one reply, then PolicyError
    trajs = collect_sync("agentrl/GuessNumber-v0", policy, [0, 1],
                         RolloutConfig(max_turns=1, concurrency=1))
    kinds = sorted(record_of(t).failure or "ok" for t in trajs)
    assert trajs[1].end_reason == "error" and trajs[1].metadata["error_source"] == "policy"
    assert "policy_error" in kinds and "env_error" not in kinds
