"""`agentrl sft`: oracle demonstrations are token-exact, the loss is on model tokens only,
packing does not change the loss, and training on demos lowers it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from agentrl.errors import ConfigError
from agentrl.train.demos import oracle_demos, oracle_trajectory
from agentrl.train.sft import (
    SFTConfig,
    add_arguments,
    main,
    masked_nll,
    pack_trajectories,
    packed_batch,
    run_sft,
)
from agentrl.trajectory import save_jsonl

CALC = "agentrl/Calculator-v0"
GUESS = "agentrl/GuessNumber-v0"


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


def _make(env_id: str, **kw):
    import agentrl.envs  # noqa: F401
    from agentrl.registry import make

    return make(env_id, **kw)


def test_masked_tokens_are_exactly_the_oracle_replies(tokenizer) -> None:
    env = _make(GUESS, high=16, max_turns=6)
    demo = oracle_trajectory(env, tokenizer, seed=3)
    assert demo.success is True and demo.num_turns >= 2
    replies = [m["content"] for m in demo.messages if m["role"] == "assistant"]
    for turn, reply in zip(demo.turns, replies, strict=True):
        span = demo.token_ids[turn.start:turn.end]
        assert span == tokenizer.encode(reply, add_special_tokens=False) + [tokenizer.eos_token_id]
    masked = [t for t, m in zip(demo.token_ids, demo.loss_mask, strict=True) if m]
    assert masked == [t for turn in demo.turns for t in demo.token_ids[turn.start:turn.end]]
    # The whole token sequence is the chat template's render of the conversation.
    text = tokenizer.apply_chat_template(demo.messages, tokenize=False)
    assert tokenizer.decode(demo.token_ids, skip_special_tokens=False) == text


def test_demo_equals_a_collector_rollout_of_the_same_replies(tokenizer) -> None:
    """The collector, fed the oracle's texts by a scripted policy, records the same tokens."""
    from agentrl.policy.fake import FakePolicy
    from agentrl.rollout import RolloutConfig, collect_sync

    demo = oracle_trajectory(_make(CALC), tokenizer, seed=11)
    replies = [m["content"] for m in demo.messages if m["role"] == "assistant"]
    policy = FakePolicy(tokenizer, replies)
    (traj,) = collect_sync(CALC, policy, [11], RolloutConfig(max_turns=4))
    assert traj.success is True and demo.success is True
    assert traj.token_ids == demo.token_ids
    assert traj.loss_mask == demo.loss_mask
    assert [(t.start, t.end, t.reward) for t in traj.turns] == [
        (t.start, t.end, t.reward) for t in demo.turns
    ]


def test_only_successful_demos_are_kept(tokenizer) -> None:
    # Binary search over 1..16 needs up to 5 guesses: with 2 turns only the secrets 8, 4 and
    # 12 are found (3 in 16), so of 40 seeded episodes some succeed and most fail.
    kept = oracle_demos(GUESS, tokenizer, range(40), env_kwargs={"high": 16, "max_turns": 2})
    every = oracle_demos(GUESS, tokenizer, range(40), env_kwargs={"high": 16, "max_turns": 2},
                         only_successful=False)
    assert len(every) == 40 and 0 < len(kept) < 40
    assert all(d.success for d in kept)


def test_packing_keeps_each_trajectory_separate(tiny_model_path: Path, tokenizer) -> None:
    """A packed row's masked loss equals the sum over the trajectories run one by one."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval()
    demos = oracle_demos(CALC, tokenizer, range(3))
    rows, cut = pack_trajectories(demos, row_tokens=4096)
    assert cut == 0 and len(rows) == 1
    assert sorted(rows[0].input_ids) == sorted(t for d in demos for t in d.token_ids)
    with torch.no_grad():
        packed, n_packed = masked_nll(model, packed_batch(rows, tokenizer.pad_token_id))
        total, n_total = 0.0, 0.0
        for d in demos:
            ids = torch.tensor([d.token_ids])
            logp = torch.log_softmax(model(ids).logits[:, :-1].float(), -1)
            lp = logp.gather(-1, ids[:, 1:, None])[0, :, 0]
            mask = torch.tensor(d.loss_mask[1:], dtype=torch.float32)
            total += float(-(lp * mask).sum())
            n_total += float(mask.sum())
    assert float(n_packed) == n_total == sum(sum(d.loss_mask) for d in demos)
    assert float(packed) == pytest.approx(total, rel=1e-4)


def test_pack_cuts_long_trajectories_and_fills_rows(tokenizer) -> None:
    demos = oracle_demos(CALC, tokenizer, range(4))
    longest = max(len(d.token_ids) for d in demos)
    rows, cut = pack_trajectories(demos, row_tokens=longest - 1)
    assert cut >= 1 and len(rows) == 4
    assert all(len(r.input_ids) <= longest - 1 for r in rows)
    rows, cut = pack_trajectories(demos, row_tokens=2 * longest)
    assert cut == 0 and len(rows) == 2


def test_sft_on_demos_lowers_the_loss_and_saves_a_loadable_checkpoint(
    tiny_model_path: Path, tokenizer, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    demos = oracle_demos(CALC, tokenizer, range(100, 132))
    cfg = SFTConfig(model=str(tiny_model_path), env=CALC, steps=30, rows_per_step=2,
                    lr=3e-3, out=str(tmp_path / "run"), log_every=0)
    result = run_sft(cfg, model=model, tokenizer=tokenizer, trajectories=demos)
    assert all(map(lambda x: x == x, result.losses))  # finite
    first, last = sum(result.losses[:3]) / 3, sum(result.losses[-3:]) / 3
    assert last < 0.5 * first
    assert result.checkpoint == tmp_path / "run" / "checkpoints" / "step_30"
    loaded = AutoModelForCausalLM.from_pretrained(result.checkpoint, dtype=torch.float32)
    ids = torch.tensor([demos[0].token_ids])
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, model(ids).logits, atol=1e-5)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 30 and json.loads(lines[-1])["step"] == 30


def test_sft_config_refuses_bad_input() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        SFTConfig(data="x.jsonl", env=CALC)
    with pytest.raises(ConfigError, match="exactly one"):
        SFTConfig()
    with pytest.raises(ConfigError, match="steps"):
        SFTConfig(env=CALC, steps=0)


def test_cli_trains_on_a_trajectory_file(tiny_model_path: Path, tokenizer, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "demos.jsonl"
    save_jsonl(oracle_demos(CALC, tokenizer, range(8)), data)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--data", str(data), "--model", str(tiny_model_path), "--steps", "3",
                              "--out", str(tmp_path / "cli")])
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "checkpoint:" in out and (tmp_path / "cli" / "checkpoints" / "step_3" / "config.json").is_file()
    missing = parser.parse_args(["--data", str(tmp_path / "none.jsonl")])
    with pytest.raises(ConfigError, match="no such file"):
        main(missing)
