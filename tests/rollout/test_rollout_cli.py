"""``agentrl rollout`` (with the transformers backend: no vLLM needed) and ``agentrl show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentrl.cli import main as cli
from agentrl.rollout import RolloutConfig, collect_sync
from agentrl.rollout.cli_rollout import summary_path
from agentrl.trajectory import load_jsonl, save_jsonl

ANSWER = "<answer>50</answer>"


@pytest.fixture()
def guess_file(tmp_path: Path, tiny_tokenizer: Any) -> Path:
    """Two GuessNumber episodes by FakePolicy guessing 50 twice (max 2 turns)."""
    from agentrl.policy import FakePolicy

    policy = FakePolicy(tiny_tokenizer, [ANSWER], cycle=True)
    trajs = collect_sync("agentrl/GuessNumber-v0", policy, [3, 4],
                         RolloutConfig(max_turns=2, env_kwargs={"max_turns": 5}))
    path = tmp_path / "guess.jsonl"
    save_jsonl(trajs, path)
    return path


def test_show_prints_turns_masks_and_rewards(guess_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    traj = load_jsonl(guess_file)[1]
    assert cli(["show", str(guess_file), "--index", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"episode 1 of 2 | agentrl/GuessNumber-v0 | seed 4 | group {traj.group_id}")
    assert f"ended: {traj.end_reason}" in out and "turns: 2" in out
    t0, t1 = traj.turns
    assert f"--- prompt | tokens [0, {traj.prompt_len}) | mask 0 ---" in out
    assert (f"--- turn 1 | tokens [{t0.start}, {t0.end}) | MODEL, mask 1: {t0.end - t0.start} tokens, "
            f"mean logprob -0.500 | finish stop | reward {t0.reward:.4f} ---") in out
    assert f"--- env after turn 1 | tokens [{t0.end}, {t1.start}) | mask 0 ---" in out
    assert out.count(f"[assistant] {ANSWER}") == 2
    assert "[user] I am thinking of an integer between 1 and 100." in out
    assert f"--- end: {traj.end_reason} ---" in out


def test_show_decodes_tokens_with_a_tokenizer(guess_file: Path, tiny_model_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    traj = load_jsonl(guess_file)[0]
    assert cli(["show", str(guess_file), "--tokenizer", str(tiny_model_path), "--tokens"]) == 0
    out = capsys.readouterr().out
    assert "<|im_start|>system\n" in out and f"{ANSWER}<|im_end|>" in out
    # One line per model token, with its id and logprob.
    token_lines = [ln for ln in out.splitlines() if "  id " in ln and "logprob" in ln]
    assert len(token_lines) == traj.num_model_tokens
    first = traj.turns[0].start
    assert token_lines[0].split()[:3] == [str(first), "id", str(traj.token_ids[first])]


def test_show_bad_input(guess_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["show", str(guess_file), "--index", "2"]) == 2
    assert "--index 2 is out of range" in capsys.readouterr().err
    assert cli(["show", str(guess_file), "--tokens"]) == 2
    assert "--tokens needs --tokenizer" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"env_id": 1}\n', encoding="utf-8")
    assert cli(["show", str(bad)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err


def test_rollout_command_with_transformers_policy(tmp_path: Path, tiny_model_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs" / "guess.jsonl"
    rc = cli(["rollout", "--env", "agentrl/GuessNumber-v0", "--policy", f"hf:{tiny_model_path}",
              "--episodes", "4", "--group-size", "2", "--max-turns", "2", "--max-new-tokens", "6",
              "--env-kwargs", '{"max_turns": 2}', "--seed", "10", "--out", str(out),
              "--policy-kwargs", '{"dtype": "float32"}'])
    assert rc == 0
    trajs = load_jsonl(out)
    assert [t.seed for t in trajs] == [10, 10, 11, 11]
    assert all(t.error is None and t.num_turns >= 1 for t in trajs)
    summary = json.loads(summary_path(out).read_text(encoding="utf-8"))
    assert summary["episodes"] == 4 and summary["policy"] == f"hf:{tiny_model_path}"
    assert summary["model_tokens"] == sum(t.num_model_tokens for t in trajs)
    assert summary["mean_reward"] == pytest.approx(sum(t.total_reward for t in trajs) / 4)
    assert summary["success_rate"] == sum(bool(t.success) for t in trajs) / 4
    assert sum(summary["end_reasons"].values()) == 4
    assert summary["config"]["max_new_tokens"] == 6
    captured = capsys.readouterr()
    assert "success rate" in captured.out and "4/4" in captured.err  # summary and progress bar


def test_rollout_command_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "x.jsonl")
    base = ["rollout", "--policy", "hf:/no/such/model", "--out", out]
    assert cli([*base, "--env", "agentrl/GuesNumber-v0"]) == 2
    assert "Did you mean: agentrl/GuessNumber-v0" in capsys.readouterr().err
    assert cli([*base, "--env", "agentrl/GuessNumber-v0"]) == 2
    assert "/no/such/model' does not exist" in capsys.readouterr().err
    assert cli([*base, "--env", "agentrl/GuessNumber-v0", "--episodes", "3", "--group-size", "2"]) == 2
    assert "multiple of --group-size" in capsys.readouterr().err
    assert cli([*base, "--env", "agentrl/GuessNumber-v0", "--env-kwargs", "[1]"]) == 2
    assert "--env-kwargs must be a JSON object" in capsys.readouterr().err
    assert cli([*base, "--env", "agentrl/GuessNumber-v0", "--policy-kwargs", "{x"]) == 2
    assert "--policy-kwargs is not valid JSON" in capsys.readouterr().err
    assert not Path(out).exists()


def test_rollout_against_a_server_that_is_down(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:  # a port on loopback that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "down.jsonl"
    rc = cli(["rollout", "--env", "agentrl/Calculator-v0", "--policy", f"openai:http://127.0.0.1:{port}",
              "--episodes", "2", "--out", str(out), "--quiet",
              "--policy-kwargs", '{"max_retries": 1, "backoff_s": 0.01}'])
    err = capsys.readouterr().err
    assert rc == 2
    assert "/v1/models failed after 2 attempts" in err and "Is the server running" in err
    assert not out.exists()  # nothing half-written


def test_rollout_all_tasks_runs_each_task_once(tmp_path: Path, tiny_model_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "he.jsonl"
    rc = cli(["rollout", "--env", "agentrl/HumanEval-v0", "--policy", f"hf:{tiny_model_path}",
              "--all-tasks", "--max-turns", "1", "--max-new-tokens", "1", "--quiet",
              "--out", str(out)])
    assert rc == 0
    trajs = load_jsonl(out)
    assert sorted(t.task_id for t in trajs) == sorted(f"HumanEval/{i}" for i in range(164))
    capsys.readouterr()
    assert cli(["show", str(out), "--index", "5"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(f"| task {trajs[5].task_id}")
    # An env that generates its tasks has no list to cover.
    assert cli(["rollout", "--env", "agentrl/Calculator-v0", "--policy", "hf:/no/such",
                "--all-tasks", "--out", str(tmp_path / "c.jsonl")]) == 2
    assert "has no finite task list" in capsys.readouterr().err
