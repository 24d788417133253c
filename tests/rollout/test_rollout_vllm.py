"""Token-in-token-out with the real CPU vLLM engine and a real vLLM server.

The trajectory's model tokens must be exactly what the engine returned, the mask must
cover exactly them, and the stored logprobs must match an independent fp32 transformers
forward pass over the trajectory's token ids.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from agentrl.policy.base import Generation, Policy, SamplingParams
from agentrl.rollout import RolloutConfig, collect_sync
from agentrl.trajectory import Trajectory, load_jsonl

pytestmark = pytest.mark.vllm


class RecordingPolicy(Policy):
    """Passes every call to ``inner`` and records (prompt ids, generations) for the checks."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.tokenizer = inner.tokenizer
        self.max_model_len = getattr(inner, "max_model_len", None)
        self.calls: list[tuple[list[int], Generation]] = []

    async def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> list[Generation]:
        out = await self.inner.generate(prompt_ids, params)
        self.calls.append((list(prompt_ids), out[0]))
        return out


@pytest.fixture(scope="module")
def vllm_rollouts(vllm_policy: Any) -> tuple[list[Trajectory], RecordingPolicy]:
    policy = RecordingPolicy(vllm_policy)
    # GuessNumber is multi-turn whatever the random tiny model says; cut turns go on to
    # the env so that every episode has several turns.
    cfg = RolloutConfig(max_turns=3, max_new_tokens=24, temperature=1.0, group_size=2,
                        truncate_on_length=False, env_kwargs={"max_turns": 3})
    trajs = collect_sync("agentrl/GuessNumber-v0", policy, [0, 1], cfg)
    return trajs, policy


def test_model_tokens_are_the_engines_output(vllm_rollouts: Any) -> None:
    trajs, policy = vllm_rollouts
    # Episodes of a group share their first prompt, so a prompt may have several outputs:
    # each turn must match one of its prompt's outputs, and each output is used once.
    by_prompt: dict[tuple[int, ...], list[Generation]] = {}
    for prompt, gen in policy.calls:
        by_prompt.setdefault(tuple(prompt), []).append(gen)
    assert len(trajs) == 4 and sum(t.num_turns for t in trajs) == len(policy.calls)
    for traj in trajs:
        assert traj.error is None and traj.num_turns == 3, traj.error
        assert traj.end_reason in ("env_truncated", "terminated")
        mask = [0] * len(traj.token_ids)
        for turn in traj.turns:
            outputs = by_prompt[tuple(traj.token_ids[:turn.start])]
            gen = next(g for g in outputs if g.token_ids == traj.token_ids[turn.start:turn.end])
            outputs.remove(gen)
            assert traj.logprobs[turn.start:turn.end] == gen.logprobs
            assert turn.finish_reason == gen.finish_reason
            # The engine's weight version (an int) reaches each turn.
            assert turn.weight_version == gen.weight_version and isinstance(gen.weight_version, int)
            mask[turn.start:turn.end] = [1] * (turn.end - turn.start)
        assert traj.loss_mask == mask
        assert all(lp == 0.0 for lp, m in zip(traj.logprobs, mask, strict=True) if not m)
    assert not any(by_prompt.values())  # every engine output is in exactly one turn
    groups = [t.group_id for t in trajs]
    assert groups[0] == groups[1] != groups[2] == groups[3]


def test_logprobs_match_transformers_fp32(vllm_rollouts: Any, tiny_model_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    trajs, _ = vllm_rollouts
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval()
    worst = 0.0
    for traj in trajs:
        ids = torch.tensor([traj.token_ids])
        with torch.no_grad():
            logits = model(ids).logits[0].float()  # [T, V]
        # Token p is predicted from position p - 1.
        ref = torch.log_softmax(logits[:-1], dim=-1).gather(-1, ids[0, 1:, None])[:, 0]  # [T-1]
        positions = [p for p, m in enumerate(traj.loss_mask) if m]
        assert positions and positions[0] >= 1
        got = torch.tensor([traj.logprobs[p] for p in positions], dtype=torch.float32)
        diff = (ref[torch.tensor(positions) - 1] - got).abs().max().item()
        worst = max(worst, diff)
    assert worst < 1e-4, f"max |vLLM - transformers| logprob difference {worst:.2e}"


@pytest.mark.slow
def test_rollout_command_against_vllm_server(vllm_server: Any, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from agentrl.rollout import cli_rollout

    out = tmp_path / "calc.jsonl"
    parser = __import__("argparse").ArgumentParser()
    cli_rollout.add_arguments(parser)
    args = parser.parse_args([
        "--env", "agentrl/GuessNumber-v0", "--policy", f"openai:{vllm_server.url}#{vllm_server.model}",
        "--episodes", "4", "--group-size", "2", "--out", str(out), "--max-turns", "2",
        "--max-new-tokens", "16", "--env-kwargs", '{"max_turns": 2}', "--quiet",
    ])
    assert cli_rollout.main(args) == 0
    trajs = load_jsonl(out)
    assert len(trajs) == 4 and all(t.error is None for t in trajs), [t.error for t in trajs]
    assert all(t.num_turns >= 1 and t.num_model_tokens >= 1 for t in trajs)
    summary = json.loads(cli_rollout.summary_path(out).read_text())
    assert summary["episodes"] == 4
    assert summary["model_tokens"] == sum(t.num_model_tokens for t in trajs)
    assert summary["mean_turns"] == sum(t.num_turns for t in trajs) / 4
    assert summary["tokens_per_s"] == pytest.approx(summary["model_tokens"] / summary["wall_time_s"])
    printed = capsys.readouterr().out
    assert "success rate" in printed and str(out) in printed


def test_bench_rollout_runs_and_reports(vllm_policy: Any, tmp_path: Path) -> None:
    # The benchmark's code paths on a tiny workload (its figures are not checked here).
    from agentrl.bench.rollout import BenchConfig, format_table, run_benchmark

    cfg = BenchConfig(episodes=3, turns=2, tokens_per_turn=4, step_latency_ms=1.0, repeats=1)
    report = run_benchmark(cfg, policy=vllm_policy)
    rows = {r["method"]: r for r in report["results"]}
    assert list(rows) == ["ceiling (one batch)", "engine multi-turn", "collector", "naive lock-step"]
    # Collector and naive loop run the same episodes: 3 episodes x 2 turns x <= 4 tokens.
    for name in ("collector", "naive lock-step", "engine multi-turn"):
        assert 6 <= rows[name]["tokens"] <= 3 * 2 * 4
    assert rows["ceiling (one batch)"]["vs_ceiling"] == 1.0 and rows["naive lock-step"]["vs_naive"] == 1.0
    assert rows["collector"]["vs_naive"] == pytest.approx(
        rows["collector"]["tokens_per_s"] / rows["naive lock-step"]["tokens_per_s"])
    assert report["met"]["vs_naive"] == (rows["collector"]["vs_naive"] >= 1.5)
    json.dumps(report)  # the report is JSON
    assert "collector" in format_table(report)
