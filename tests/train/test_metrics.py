"""Metrics: the mismatch breakdown against hand-worked values, JSONL logging, plots."""

from __future__ import annotations

import json
import math

import pytest
import torch

from agentrl.errors import ConfigError
from agentrl.train.metrics import MetricsLogger, mismatch_breakdown, read_metrics, truncate_metrics


def test_mismatch_breakdown_hand_worked():
    # one episode, 6 positions: prompt (0, 1), turn 0 at 2-3, env token 4, turn 1 at 5
    learner = torch.tensor([[0.0, 0.0, -1.0, -2.0, 0.0, -0.5]])
    sampler = torch.tensor([[0.0, 0.0, -1.1, -2.0, 0.0, -0.3]])
    mask = torch.tensor([[0.0, 0, 1, 1, 0, 1]])
    turn = torch.tensor([[-1, -1, 0, 0, -1, 1]])
    out = mismatch_breakdown(learner, sampler, mask, turn, buckets=(4,), max_turns=2)
    # d = learner - sampler on model tokens: 0.1, 0.0, -0.2
    assert out["mismatch/abs"] == pytest.approx((0.1 + 0.0 + 0.2) / 3)
    assert out["mismatch/max_abs"] == pytest.approx(0.2)
    assert out["mismatch/turn0_abs"] == pytest.approx(0.05)
    assert out["mismatch/turn1_abs"] == pytest.approx(0.2)
    k3 = lambda d: math.exp(d) - 1 - d  # noqa: E731
    assert out["mismatch/turn1_kl"] == pytest.approx(k3(-0.2))
    assert out["mismatch/kl"] == pytest.approx((k3(0.1) + k3(0.0) + k3(-0.2)) / 3)
    # positions 2, 3 are below 4; position 5 is in the last bucket
    assert out["mismatch/pos<4_abs"] == pytest.approx(0.05)
    assert out["mismatch/pos>=4_abs"] == pytest.approx(0.2)
    assert "mismatch/turn2+_abs" not in out  # no token there


def test_logger_jsonl_nonfinite_and_truncate(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=True, progress=False, total_steps=3)
    for step in (1, 2, 3):
        log.log(step, {"reward/mean": step / 10, "loss/policy": float("nan")})
    log.close()
    recs = read_metrics(tmp_path)
    assert [r["step"] for r in recs] == [1, 2, 3]
    assert recs[1]["reward/mean"] == 0.2 and recs[1]["loss/policy"] is None
    assert any((tmp_path / "tensorboard").iterdir())
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 4, "rew')  # a torn line from a kill
    assert len(read_metrics(tmp_path)) == 3
    truncate_metrics(tmp_path / "metrics.jsonl", 2)
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_plot_writes_pngs(tmp_path):
    from agentrl.train.plot import plot_run

    with pytest.raises(ConfigError, match="metrics"):
        plot_run(tmp_path)
    log = MetricsLogger(tmp_path, tensorboard=False, progress=False)
    for step in range(1, 31):
        log.log(step, {"reward/mean": step / 30, "success/rate": step / 40, "policy/entropy": 2.0,
                       "mismatch/turn0_abs": 1e-6, "mismatch/pos<128_abs": 2e-6,
                       "time/collect_s": 1.0, "time/update_s": 0.5})
    log.close()
    (tmp_path / "eval.json").write_text(json.dumps({"before": {"success": 0.1}, "after": {"success": 0.6}}))
    paths = plot_run(tmp_path)
    assert [p.name for p in paths] == ["overview.png", "mismatch.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
