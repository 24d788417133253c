"""Aggregate figures of a batch of trajectories (``agentrl rollout`` prints and saves them)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from agentrl.trajectory import Trajectory

__all__ = ["summarize", "format_summary"]


def summarize(trajectories: Sequence[Trajectory], wall_time_s: float) -> dict[str, Any]:
    """Success rate, mean reward, turns, tokens and throughput of ``trajectories``.

    ``success_rate`` counts episodes whose env reported success over *all* episodes
    (unknown success and errors count as failures). ``tokens_per_s`` is generated (model)
    tokens per second of wall time.
    """
    n = len(trajectories)
    model_tokens = sum(t.num_model_tokens for t in trajectories)

    def mean(values: list[float]) -> float:
        return float(sum(values) / len(values)) if values else 0.0

    return {
        "episodes": n,
        "env_ids": sorted({t.env_id for t in trajectories}),
        "success_rate": mean([1.0 if t.success else 0.0 for t in trajectories]),
        "success_known": sum(t.success is not None for t in trajectories),
        "mean_reward": mean([t.total_reward for t in trajectories]),
        "mean_turns": mean([float(t.num_turns) for t in trajectories]),
        "model_tokens": model_tokens,
        "total_tokens": sum(len(t.token_ids) for t in trajectories),
        "mean_model_tokens": mean([float(t.num_model_tokens) for t in trajectories]),
        "wall_time_s": wall_time_s,
        "tokens_per_s": model_tokens / wall_time_s if wall_time_s > 0 else 0.0,
        "end_reasons": dict(sorted(Counter(t.end_reason for t in trajectories).items())),
        "errors": [t.error for t in trajectories if t.error][:5],
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A few aligned lines for a terminal."""
    rows = [
        ("episodes", f"{summary['episodes']}"),
        ("success rate", f"{summary['success_rate']:.3f}"),
        ("mean reward", f"{summary['mean_reward']:.4f}"),
        ("mean turns", f"{summary['mean_turns']:.2f}"),
        ("model tokens", f"{summary['model_tokens']} (all tokens {summary['total_tokens']})"),
        ("wall time", f"{summary['wall_time_s']:.2f} s"),
        ("tokens/s", f"{summary['tokens_per_s']:.1f} generated"),
        ("end reasons", ", ".join(f"{k} {v}" for k, v in summary["end_reasons"].items())),
    ]
    lines = [f"{name:<14}{value}" for name, value in rows]
    lines += [f"{'error':<14}{err}" for err in summary["errors"]]
    return "\n".join(lines)
