"""``agentrl bench sandbox`` runs end to end (figures are printed, never asserted)."""

from __future__ import annotations

import argparse
import json

import pytest

from agentrl.bench import sandbox as bench
from agentrl.errors import ConfigError


def test_summarize_percentiles_by_hand():
    # 1..100 ms: numpy's linear percentile gives p50 = 50.5 and p99 = 99.01.
    stats = bench.summarize([k / 1000 for k in range(1, 101)])
    assert stats["p50_ms"] == pytest.approx(50.5)
    assert stats["p99_ms"] == pytest.approx(99.01)
    assert stats["mean_ms"] == pytest.approx(50.5) and stats["n"] == 100


def test_benchmark_prints_a_table_and_writes_json(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out = tmp_path / "bench.json"
    args = parser.parse_args(["--iterations", "3", "--warmup", "1", "--json", str(out)])
    assert bench.main(args) == 0
    printed = capsys.readouterr().out
    for row in ("subprocess", "bwrap", "bwrap-prestart", "bwrap-true", "session",
                "bwrap / subprocess"):
        assert row in printed
    data = json.loads(out.read_text())
    assert set(data["cases"]) == {"subprocess", "bwrap", "bwrap-prestart", "bwrap-true", "session"}
    for case in data["cases"].values():
        assert case["p50_ms"] > 0 and case["p99_ms"] >= case["p50_ms"] and case["exec_per_s"] > 0
    ratio = data["cases"]["bwrap"]["p50_ms"] / data["cases"]["subprocess"]["p50_ms"]
    assert data["bwrap_over_subprocess_p50"] == pytest.approx(ratio)
    ratio = data["cases"]["bwrap-prestart"]["p50_ms"] / data["cases"]["subprocess"]["p50_ms"]
    assert data["prestart_over_subprocess_p50"] == pytest.approx(ratio)


def test_bad_arguments_are_config_errors(tmp_path):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    with pytest.raises(ConfigError, match="iterations"):
        bench.main(parser.parse_args(["--iterations", "0", "--json", str(tmp_path / "x")]))
