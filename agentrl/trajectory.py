"""The Trajectory record: one episode as the learner sees it.

Token-in-token-out: ``token_ids`` hold the prompt and every turn exactly as the policy
generated them (model tokens are never re-tokenized); only environment messages are
tokenized and appended. ``loss_mask`` is 1 exactly on model-generated tokens and
``logprobs`` holds the sampler's logprob of each of those tokens (0.0 elsewhere).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentrl.errors import TrajectoryFormatError

__all__ = ["END_REASONS", "Turn", "Trajectory", "save_jsonl", "load_jsonl", "iter_jsonl"]

#: Why an episode ended. ``terminated``: the env ended the task; ``env_truncated``: the
#: env hit its own limit (turns, time); ``max_turns``/``max_new_tokens``/``max_context``:
#: a collector limit; ``error``: the env or policy raised (recorded, episode failed).
END_REASONS = (
    "terminated",
    "env_truncated",
    "max_turns",
    "max_new_tokens",
    "max_context",
    "error",
)


@dataclass
class Turn:
    """One assistant turn: its model tokens ``token_ids[start:end]`` and its reward."""

    start: int
    """Index in ``Trajectory.token_ids`` of the turn's first model token."""
    end: int
    """One past the turn's last model token (exclusive)."""
    reward: float = 0.0
    """Reward the env returned for this turn's action."""
    finish_reason: str = "stop"
    """Why generation of this turn stopped: ``stop`` or ``length``."""
    info: dict[str, Any] = field(default_factory=dict)
    """JSON-safe part of the env's ``info`` for this step (parse status, tools run)."""
    weight_version: int | None = None
    """The policy's weight version that generated this turn (``None``: the backend has no
    versions, e.g. a remote server); the trainer's staleness accounting reads it."""


@dataclass
class Trajectory:
    """One multi-turn episode, serializable to one JSON line."""

    env_id: str
    """Gymnasium id of the environment."""
    token_ids: list[int]
    """Prompt, model turns and environment messages, in order, as token ids."""
    loss_mask: list[int]
    """1 on model-generated tokens, 0 on prompt, tool and user tokens."""
    logprobs: list[float]
    """Sampling logprob of each model token; 0.0 where ``loss_mask`` is 0."""
    prompt_len: int
    """Number of tokens of the initial prompt (system prompt and task)."""
    turns: list[Turn] = field(default_factory=list)
    """Spans and rewards of the assistant turns, in order."""
    seed: int | None = None
    """Seed the env was reset with (same seed, same task)."""
    group_id: str = ""
    """Episodes sampled for the same task share a group id (GRPO-style groups)."""
    success: bool | None = None
    """Whether the task was solved, where the env knows."""
    terminated: bool = False
    """The env ended the episode (task done or failed)."""
    truncated: bool = False
    """A limit ended the episode (env or collector limit)."""
    end_reason: str = "terminated"
    """One of :data:`END_REASONS`."""
    error: str | None = None
    """Error message when ``end_reason == 'error'``."""
    messages: list[dict[str, Any]] = field(default_factory=list)
    """The whole conversation as chat messages, for people and for chat-only policies."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Free-form JSON-safe extras (policy name, timings)."""
    task_id: str | None = None
    """The task this episode ran: the spec's ``task_id``, else the reset info's ``task_id``."""
    options: dict[str, Any] = field(default_factory=dict)
    """JSON-safe part of the options the env was reset with."""
    reset_info: dict[str, Any] = field(default_factory=dict)
    """JSON-safe part of the ``info`` that ``env.reset`` returned (task id, category...)."""

    def __post_init__(self) -> None:
        self.validate()

    # -- checks ---------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`TrajectoryFormatError` if the fields are inconsistent."""
        n = len(self.token_ids)
        if len(self.loss_mask) != n or len(self.logprobs) != n:
            raise TrajectoryFormatError(
                f"token_ids, loss_mask and logprobs must have equal lengths, got "
                f"{n}, {len(self.loss_mask)}, {len(self.logprobs)}"
            )
        if not 0 <= self.prompt_len <= n:
            raise TrajectoryFormatError(f"prompt_len {self.prompt_len} outside 0..{n}")
        if any(m not in (0, 1) for m in self.loss_mask):
            raise TrajectoryFormatError("loss_mask must contain only 0 and 1")
        if self.end_reason not in END_REASONS:
            raise TrajectoryFormatError(
                f"end_reason {self.end_reason!r} is not one of {', '.join(END_REASONS)}"
            )
        prev_end = self.prompt_len
        for i, t in enumerate(self.turns):
            if not prev_end <= t.start <= t.end <= n:
                raise TrajectoryFormatError(
                    f"turn {i} span [{t.start}, {t.end}) overlaps or lies outside the tokens"
                )
            if any(self.loss_mask[j] != 1 for j in range(t.start, t.end)):
                raise TrajectoryFormatError(f"turn {i} span holds tokens with loss_mask 0")
            prev_end = t.end
        covered = sum(t.end - t.start for t in self.turns)
        if covered != sum(self.loss_mask):
            raise TrajectoryFormatError(
                "loss_mask marks tokens outside the turn spans "
                f"({sum(self.loss_mask)} masked, {covered} in turns)"
            )
        if any(not math.isfinite(x) for x in self.logprobs):
            raise TrajectoryFormatError("logprobs must be finite")
        if self.task_id is not None and not isinstance(self.task_id, str):
            raise TrajectoryFormatError(f"task_id must be a str or None, got {self.task_id!r}")
        if not isinstance(self.options, dict) or not isinstance(self.reset_info, dict):
            raise TrajectoryFormatError("options and reset_info must be dicts")

    # -- views ----------------------------------------------------------------------
    @property
    def valid(self) -> bool:
        """False for an episode that ended in an error (excluded from group baselines)."""
        return self.end_reason != "error"

    @property
    def weight_versions(self) -> list[int | None]:
        """Weight version of each turn, in turn order."""
        return [t.weight_version for t in self.turns]

    @property
    def rewards(self) -> list[float]:
        """Per-turn rewards, in turn order."""
        return [t.reward for t in self.turns]

    @property
    def total_reward(self) -> float:
        """Sum of the per-turn rewards."""
        return float(sum(self.rewards))

    @property
    def num_turns(self) -> int:
        return len(self.turns)

    @property
    def num_model_tokens(self) -> int:
        return int(sum(self.loss_mask))

    def turn_index(self) -> list[int]:
        """Per token: the index of the turn that generated it, or -1 for env/prompt tokens."""
        idx = [-1] * len(self.token_ids)
        for i, t in enumerate(self.turns):
            for j in range(t.start, t.end):
                idx[j] = i
        return idx

    # -- serialization ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        """Build from :meth:`to_dict` output; records written before a field existed load
        with that field's default."""
        if not isinstance(data, dict):
            raise TrajectoryFormatError(f"expected a JSON object, got {type(data).__name__}")
        try:
            turns = [Turn(**t) for t in data.get("turns", [])]
            return cls(**{**data, "turns": turns})
        except TypeError as exc:
            raise TrajectoryFormatError(f"bad trajectory record: {exc}") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_json(cls, line: str) -> Trajectory:
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TrajectoryFormatError(f"not valid JSON: {exc}") from exc
        return cls.from_dict(data)


def save_jsonl(trajectories: Iterable[Trajectory], path: str | Path) -> int:
    """Write one trajectory per line; return how many were written."""
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        for traj in trajectories:
            fh.write(traj.to_json())
            fh.write("\n")
            count += 1
    return count


def iter_jsonl(path: str | Path) -> Iterator[Trajectory]:
    """Yield trajectories from a JSONL file; errors name the line number."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield Trajectory.from_json(line)
            except TrajectoryFormatError as exc:
                raise TrajectoryFormatError(f"{path}:{lineno}: {exc}") from exc


def load_jsonl(path: str | Path) -> list[Trajectory]:
    """Load every trajectory of a JSONL file."""
    return list(iter_jsonl(path))
