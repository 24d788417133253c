"""Scoring an evaluation: one record per episode, figures per env, BFCL's overall score.

Every failed episode gets one entry of the failure taxonomy (:data:`FAILURE_KINDS`): the
env's own ``info["failure"]`` where it reports one (BFCL envs do), else one derived from
how the episode ended (``limit_hit``, ``env_error``, ``tool_error``, ``no_call``) or
``wrong_answer``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from agentrl.eval.stats import pass_at_k, pass_hat_k, wilson

__all__ = ["EpisodeRecord", "FAILURE_KINDS", "record_of", "summarize_env", "bfcl_overall",
           "BFCL_WEIGHTS", "records_json"]

FAILURE_KINDS = (
    "no_call", "unparseable_call", "wrong_function", "wrong_args", "extra_call",
    "missing_call", "irrelevance", "tool_error", "limit_hit", "env_error", "policy_error", "wrong_answer",
)
_LIMITS = ("max_turns", "max_new_tokens", "max_context", "env_truncated")


@dataclass(frozen=True)
class EpisodeRecord:
    """What an evaluation keeps of one episode (JSON-safe)."""

    env_id: str
    """The env the episode ran in."""
    task_id: str
    """The task (BFCL entry id, HumanEval id, or ``seed-N``)."""
    success: bool
    """Whether the env reported success."""
    failure: str | None
    """Taxonomy entry of a failed episode; None on success."""
    turns: int
    """Assistant turns."""
    calls: int
    """Tool calls made."""
    calls_ok: int
    """Tool calls that decoded and ran without error."""
    model_tokens: int
    """Tokens the model generated."""
    time_s: float
    """Wall time of the episode."""
    end_reason: str
    """How it ended (``terminated``, a limit, ``error``)."""
    check: str = ""
    """The env's detailed check result (BFCL error type), if any."""


def _failure(traj: Any, last: dict[str, Any]) -> str:
    if traj.end_reason == "error":  # the policy's failure (engine died, bad prompt) apart
        return "policy_error" if traj.metadata.get("error_source") == "policy" else "env_error"
    if last.get("failure"):
        return str(last["failure"])
    if traj.end_reason in _LIMITS:
        return "limit_hit"
    calls = [c for t in traj.turns for c in (t.info or {}).get("tool_calls", [])]
    if any(not c.get("ok", True) for c in calls):
        return "tool_error"
    if any(not (t.info or {}).get("parsed", True) for t in traj.turns):
        return "unparseable_call"
    return "wrong_answer" if calls else "no_call"


def record_of(traj: Any) -> EpisodeRecord:
    """The record of a :class:`~agentrl.trajectory.Trajectory`."""
    infos = [t.info or {} for t in traj.turns]
    last = infos[-1] if infos else {}
    calls = [c for info in infos for c in info.get("tool_calls", [])]
    success = bool(traj.success)
    task = traj.task_id or (traj.reset_info or {}).get("task_id") or f"seed-{traj.seed}"
    return EpisodeRecord(
        env_id=traj.env_id, task_id=str(task), success=success,
        failure=None if success else _failure(traj, last), turns=len(traj.turns),
        calls=len(calls), calls_ok=sum(bool(c.get("ok", True)) for c in calls),
        model_tokens=int(traj.num_model_tokens), time_s=float(traj.metadata.get("time_s", 0.0)),
        end_reason=traj.end_reason, check=str(last.get("check") or ""),
    )


def summarize_env(records: Sequence[EpisodeRecord], wall_s: float = 0.0) -> dict[str, Any]:
    """Figures of one env: success with Wilson 95% CI, pass@k / pass^k for k = 1..samples,
    mean turns, tool-call validity, tokens, time, and the failure taxonomy."""
    n = len(records)
    wins = sum(r.success for r in records)
    lo, hi = wilson(wins, n)
    by_task: dict[str, list[bool]] = defaultdict(list)
    for r in records:
        by_task[r.task_id].append(r.success)
    samples = min((len(v) for v in by_task.values()), default=0)
    pass_at: dict[str, float] = {}
    pass_hat: dict[str, float] = {}
    for k in range(1, samples + 1):
        pass_at[str(k)] = _mean(pass_at_k(len(v), sum(v), k) for v in by_task.values())
        pass_hat[str(k)] = _mean(pass_hat_k(len(v), sum(v), k) for v in by_task.values())
    calls = sum(r.calls for r in records)
    tokens = sum(r.model_tokens for r in records)
    return {
        "episodes": n, "tasks": len(by_task), "samples": samples, "successes": wins,
        "success_rate": wins / n if n else 0.0, "ci95": [lo, hi],
        "pass_at_k": pass_at, "pass_hat_k": pass_hat,
        "mean_turns": _mean(r.turns for r in records),
        "tool_calls": calls, "tool_call_validity": (sum(r.calls_ok for r in records) / calls) if calls else None,
        "model_tokens": tokens, "mean_model_tokens": tokens / n if n else 0.0,
        "mean_time_s": _mean(r.time_s for r in records), "wall_s": wall_s,
        "tokens_per_s": tokens / wall_s if wall_s > 0 else None,
        "failures": dict(Counter(r.failure for r in records if r.failure).most_common()),
    }


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return float(sum(items) / len(items)) if items else 0.0


#: BFCL v4 overall-score weights of its five groups (they sum to 100).
BFCL_WEIGHTS = {"non_live": 10, "live": 10, "irrelevance": 10, "multi_turn": 30, "agentic": 40}
_NON_LIVE = ("simple_python", "simple_java", "simple_javascript", "multiple", "parallel", "parallel_multiple")
_LIVE = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")
_IRRELEVANCE = ("irrelevance", "live_irrelevance")
_MULTI = ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context")


def _category(env_id: str) -> str | None:
    if env_id.startswith("agentrl/BFCL-") and env_id.endswith("-v0"):
        return env_id[len("agentrl/BFCL-"):-len("-v0")]
    return None


def bfcl_overall(per_env: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """BFCL v4's overall score from the categories run (None if no BFCL env ran).

    As BFCL computes it: non-live = mean of (mean of the three simple categories),
    multiple, parallel, parallel_multiple; live = mean over the live AST entries (weighted
    by count); irrelevance = mean of irrelevance and live_irrelevance; multi-turn = mean of
    its four categories; agentic (web search, memory) is never run here. A missing
    category counts 0, as in BFCL, and the score is marked ``partial``.
    """
    acc = {c: (s["success_rate"], s["episodes"]) for e, s in per_env.items()
           if (c := _category(e)) is not None}
    if not acc:
        return None
    rate = {c: acc.get(c, (0.0, 0))[0] for c in _NON_LIVE + _LIVE + _IRRELEVANCE + _MULTI}
    simple = _mean(rate[c] for c in _NON_LIVE[:3])
    groups = {
        "non_live": _mean([simple, rate["multiple"], rate["parallel"], rate["parallel_multiple"]]),
        "live": (sum(acc[c][0] * acc[c][1] for c in _LIVE if c in acc)
                 / max(1, sum(acc[c][1] for c in _LIVE if c in acc))),
        "irrelevance": _mean(rate[c] for c in _IRRELEVANCE),
        "multi_turn": _mean(rate[c] for c in _MULTI),
        "agentic": 0.0,
    }
    missing = [c for c in _NON_LIVE + _LIVE + _IRRELEVANCE + _MULTI if c not in acc]
    overall = sum(groups[g] * w for g, w in BFCL_WEIGHTS.items()) / sum(BFCL_WEIGHTS.values())
    return {"overall": overall, "groups": groups, "weights": dict(BFCL_WEIGHTS), "partial": True,
            "missing_categories": missing + ["web_search", "memory"],
            "relevance": acc.get("live_relevance", (None,))[0],
            "note": "agentic (web_search, memory: 40% of the weight) needs the network and is "
                    "not run; it counts 0 as in BFCL, so this is a partial score"}


def records_json(records: Sequence[EpisodeRecord]) -> list[dict[str, Any]]:
    """Records as JSON-safe dicts."""
    return [asdict(r) for r in records]

