"""`agentrl bench learn`: config refusals, the comparison verdicts, the table."""

from __future__ import annotations

import pytest

from agentrl.bench.learn import LearnBenchConfig, _spread, format_table
from agentrl.errors import ConfigError


def test_refuses_unknown_parts_and_comparisons_without_a_start():
    with pytest.raises(ConfigError, match="unknown part"):
        LearnBenchConfig(parts=("default", "nope"))
    with pytest.raises(ConfigError, match="sft-checkpoint"):
        LearnBenchConfig(parts=("credit",))
    assert LearnBenchConfig(parts=("credit",), sft_checkpoint="x").parts == ("credit",)
    with pytest.raises(ConfigError):
        LearnBenchConfig(seeds=0)


def test_spread_mean_std_and_nan_dropped():
    s = _spread([0.5, 0.7, float("nan"), 0.6])
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.6) and s["std"] == pytest.approx(0.1)


def test_table_shows_phases_and_verdicts():
    report = {
        "default": {"env": "agentrl/GuessNumber-v0", "env_kwargs": {"high": 16},
                    "held_out_episodes": 200, "start": {"success": 0.0},
                    "after_sft": {"success": 0.2}, "after_rl": {"success": 0.45}, "wall_s": 600},
        "credit": {
            "grpo": {"success_after": {"mean": 0.4, "std": 0.02, "n": 3.0},
                     "gain": {"mean": 0.2, "std": 0.0, "n": 3.0},
                     "turns_to_solve": {"mean": 3.5, "std": 0.1, "n": 3.0},
                     "vs_grpo": {"diff": 0.0, "beyond_spread": False}},
            "gigpo": {"success_after": {"mean": 0.5, "std": 0.03, "n": 3.0},
                      "gain": {"mean": 0.3, "std": 0.0, "n": 3.0},
                      "turns_to_solve": {"mean": 3.2, "std": 0.1, "n": 3.0},
                      "vs_grpo": {"diff": 0.1, "beyond_spread": True}},
        },
    }
    text = format_table(report)
    assert "| 0.000 | 0.200 | 0.450 | +0.250 | 10.0 |" in text
    assert "| gigpo | 3 | 0.500 ± 0.030 | +0.300 | 3.20 | +0.100 (beyond spread) |" in text
    assert "critic" not in text
