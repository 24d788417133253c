"""`agentrl bench env`: rows per env and kind of call, GEM beside when installed, JSON out."""

from __future__ import annotations

import json

import pytest

from agentrl.bench.env import format_table, gem_version, run_benchmark
from agentrl.cli import main
from agentrl.errors import ConfigError


def test_rows_for_every_core_env_and_kind_of_call():
    report = run_benchmark(episodes=30, seeds=8, sandbox=False, gem=False)
    ops = {(r["env"], r["op"]) for r in report["rows"] if r["framework"] == "agentrl"}
    assert ops == {
        ("agentrl/Calculator-v0", "reset (seen seed)"), ("agentrl/Calculator-v0", "reset (new seed)"),
        ("agentrl/Calculator-v0", "tool step"), ("agentrl/Calculator-v0", "answer step"),
        ("agentrl/GuessNumber-v0", "reset (seen seed)"), ("agentrl/GuessNumber-v0", "reset (new seed)"),
        ("agentrl/GuessNumber-v0", "step"),
    }
    for r in report["rows"]:
        assert 0 < r["p50_us"] <= r["p99_us"] and r["n"] >= 30
    assert "not installed" in format_table(report) or report["gem_version"] is None


@pytest.mark.skipif(gem_version() is None, reason="gem-llm (the bench extra) is not installed")
def test_gem_rows_beside_ours(tmp_path):
    out = tmp_path / "env.json"
    assert main(["bench", "env", "--episodes", "30", "--seeds", "8", "--no-sandbox",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    gem = {(r["env"], r["op"]) for r in report["rows"] if r["framework"] == "gem"}
    assert ("agentrl/Calculator-v0", "tool step") in gem
    assert ("agentrl/GuessNumber-v0", "step") in gem
    assert "GEM p50" in format_table(report) and report["gem_version"]


def test_bad_counts_are_config_errors():
    with pytest.raises(ConfigError):
        run_benchmark(episodes=0)
