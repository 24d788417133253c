"""Evaluation statistics against hand-worked values."""

from __future__ import annotations

import itertools
import math

import pytest

from agentrl.errors import ConfigError
from agentrl.eval.score import EpisodeRecord, bfcl_overall, summarize_env
from agentrl.eval.stats import paired_bootstrap, pass_at_k, pass_hat_k, wilson
from agentrl.eval.suites import SUITES, register_suite, resolve_envs


def test_wilson_matches_hand_worked_values():
    # 5/10: centre 0.5, half-width 1.96*sqrt(0.025 + 1.96^2/400)/(1 + 1.96^2/10) = 0.26341
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.23659, abs=1e-5) and hi == pytest.approx(0.76341, abs=1e-5)
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.27753, abs=1e-5)
    assert wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(ConfigError):
        wilson(3, 2)


def test_pass_at_k_and_pass_hat_k_by_enumeration():
    n, c = 5, 2
    outcomes = [1] * c + [0] * (n - c)
    for k in range(1, n + 1):
        subsets = list(itertools.combinations(outcomes, k))
        any_ok = sum(any(s) for s in subsets) / len(subsets)
        all_ok = sum(all(s) for s in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(any_ok)
        assert pass_hat_k(n, c, k) == pytest.approx(all_ok)
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7) and pass_hat_k(5, 2, 2) == pytest.approx(0.1)


def _rec(task, ok, failure=None, calls=1, calls_ok=1):
    return EpisodeRecord("agentrl/X-v0", task, ok, None if ok else failure or "no_call", 1,
                         calls, calls_ok, 10, 0.1, "terminated")


def test_summary_per_env():
    recs = [_rec("t1", True), _rec("t1", True), _rec("t2", True), _rec("t2", False, "wrong_args", 2, 1)]
    s = summarize_env(recs, wall_s=2.0)
    assert s["success_rate"] == 0.75 and s["tasks"] == 2 and s["samples"] == 2
    assert s["pass_at_k"] == {"1": 0.75, "2": 1.0}
    assert s["pass_hat_k"] == {"1": 0.75, "2": 0.5}
    assert s["tool_call_validity"] == pytest.approx(4 / 5)
    assert s["failures"] == {"wrong_args": 1} and s["tokens_per_s"] == 20.0


def test_paired_bootstrap():
    a = {f"t{i}": 0.0 for i in range(50)}
    same = paired_bootstrap(a, dict(a))
    assert same == (0.0, 0.0, 0.0, 50)
    better = {k: 1.0 for k in a}
    diff, lo, hi, n = paired_bootstrap(a, better)
    assert (diff, lo, hi, n) == (1.0, 1.0, 1.0, 50)
    one = dict(a, t0=1.0)  # one task of 50 flips: within noise
    diff, lo, hi, _ = paired_bootstrap(a, one)
    assert diff == pytest.approx(0.02) and lo <= 0.0 <= hi
    assert paired_bootstrap(a, one, seed=3) == paired_bootstrap(a, one, seed=3)


def test_bfcl_overall_weights_hand_worked():
    def env(cat, rate, n=100):
        return f"agentrl/BFCL-{cat}-v0", {"success_rate": rate, "episodes": n}

    per_env = dict([env("simple_python", 0.9), env("simple_java", 0.6), env("simple_javascript", 0.3),
                    env("multiple", 0.8), env("live_simple", 0.5, 100), env("live_multiple", 0.25, 300),
                    env("irrelevance", 1.0), env("multi_turn_base", 0.4)])
    out = bfcl_overall(per_env)
    g = out["groups"]
    assert g["non_live"] == pytest.approx((0.6 + 0.8 + 0 + 0) / 4)  # simple = mean(.9,.6,.3)
    assert g["live"] == pytest.approx((0.5 * 100 + 0.25 * 300) / 400)
    assert g["irrelevance"] == pytest.approx(0.5) and g["multi_turn"] == pytest.approx(0.1)
    expected = (10 * 0.35 + 10 * 0.3125 + 10 * 0.5 + 30 * 0.1 + 40 * 0) / 100
    assert out["overall"] == pytest.approx(expected) and out["partial"]
    assert "parallel" in out["missing_categories"] and bfcl_overall({}) is None
    assert not math.isnan(out["overall"])


def test_suites():
    assert len(SUITES["bfcl"]) == 17 and resolve_envs("bfcl-multi")[0] == "agentrl/BFCL-multi_turn_base-v0"
    assert resolve_envs("code,agentrl/HumanEval-v0") == ["agentrl/HumanEval-v0"]
    register_suite("mine", ["agentrl/Calculator-v0"])
    assert resolve_envs("mine") == ["agentrl/Calculator-v0"]
    with pytest.raises(ConfigError, match="suites"):
        resolve_envs("nope")
