"""Evaluation: run a policy on envs/suites, score (pass@k, pass^k, Wilson intervals, failure
taxonomy, BFCL's overall score) and report (JSON, Markdown, self-contained HTML)."""

from agentrl.eval.score import FAILURE_KINDS, EpisodeRecord, bfcl_overall, record_of, summarize_env
from agentrl.eval.stats import paired_bootstrap, pass_at_k, pass_hat_k, wilson
from agentrl.eval.suites import SUITES, register_suite, resolve_envs

__all__ = [
    "FAILURE_KINDS",
    "EpisodeRecord",
    "SUITES",
    "bfcl_overall",
    "paired_bootstrap",
    "pass_at_k",
    "pass_hat_k",
    "record_of",
    "register_suite",
    "resolve_envs",
    "summarize_env",
    "wilson",
]
