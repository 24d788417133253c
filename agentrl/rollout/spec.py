"""What one episode is: a seed, reset options, a task, a group (:class:`EpisodeSpec`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agentrl.errors import ConfigError

__all__ = ["EpisodeSpec", "SpecLike", "as_spec", "as_specs", "specs_for"]


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to run: how to reset the env, and which group it belongs to."""

    seed: int | None = None
    """Seed passed to ``env.reset(seed=...)`` (``None``: unseeded)."""
    options: Mapping[str, Any] | None = None
    """Options passed to ``env.reset(options=...)`` (JSON-safe entries are recorded)."""
    group_id: str = ""
    """Episodes with the same non-empty group id form one group (GRPO-style); empty: the
    collector gives each submitted spec a fresh group id."""
    task_id: str | None = None
    """The task to run; added to the reset options as ``options["task_id"]`` (the
    :class:`~agentrl.env.AgentEnv` convention for envs with a finite task list)."""

    def __post_init__(self) -> None:
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigError(f"EpisodeSpec.seed must be an int or None, got {self.seed!r}")
        if self.options is not None and not isinstance(self.options, Mapping):
            raise ConfigError(
                f"EpisodeSpec.options must be a mapping (dict) or None, got {type(self.options).__name__}"
            )
        if not isinstance(self.group_id, str):
            raise ConfigError(f"EpisodeSpec.group_id must be a str, got {self.group_id!r}")
        if self.task_id is not None and not isinstance(self.task_id, str):
            raise ConfigError(f"EpisodeSpec.task_id must be a str or None, got {self.task_id!r}")
        if (
            self.task_id is not None
            and self.options is not None
            and "task_id" in self.options
            and self.options["task_id"] != self.task_id
        ):
            raise ConfigError(
                f"EpisodeSpec.task_id {self.task_id!r} differs from options['task_id'] "
                f"{self.options['task_id']!r}: give the task once"
            )

    def reset_options(self) -> dict[str, Any] | None:
        """The ``options`` for ``env.reset``: ``options`` plus ``task_id`` where set."""
        if self.task_id is None:
            return None if self.options is None else dict(self.options)
        return {**(self.options or {}), "task_id": self.task_id}


#: What the collector accepts as one episode: a spec, a seed, or ``None`` (unseeded).
SpecLike = EpisodeSpec | int | None


def as_spec(item: SpecLike) -> EpisodeSpec:
    """An :class:`EpisodeSpec` from a spec, a seed (int) or ``None``."""
    if isinstance(item, EpisodeSpec):
        return item
    if item is None:
        return EpisodeSpec()
    if isinstance(item, int) and not isinstance(item, bool):
        return EpisodeSpec(seed=item)
    raise ConfigError(
        f"an episode is an EpisodeSpec, an int seed or None, got {item!r:.80} "
        f"({type(item).__name__}); e.g. range(8) or specs_for(env)"
    )


def as_specs(items: Iterable[SpecLike]) -> list[EpisodeSpec]:
    """:func:`as_spec` of every item (a bare int or str is refused: pass ``range(n)``)."""
    if isinstance(items, int | str | bytes | EpisodeSpec) or not isinstance(items, Iterable):
        raise ConfigError(
            "specs must be a sequence of EpisodeSpec / int seeds / None, e.g. range(8) or "
            f"specs_for(env), got {type(items).__name__}"
        )
    return [as_spec(item) for item in items]


def specs_for(
    env: Any, *, samples: int = 1, episodes: int | None = None, seed: int = 0
) -> list[EpisodeSpec]:
    """The episodes that cover ``env`` once: each task ``samples`` times, or seeded episodes.

    Args:
        env: an env instance (or a registered env id, made once to ask, then closed).
        samples: episodes per task; the ``samples`` episodes of a task share a group id.
        episodes: for an env without a finite task list (``task_ids()`` returns ``None``
            or is missing): how many seeded specs (``seed, seed + 1, ...``), one group each
            of ``samples`` episodes. Required for such envs; for finite ones it caps the
            number of tasks (the first ``episodes`` task ids).
        seed: the first seed. Finite-task specs get ``seed + k`` for task ``k`` too (the
            task is chosen by ``task_id``; the seed only feeds the env's other randomness).

    Returns:
        ``samples`` consecutive specs per task (or per seed).

    Raises:
        ConfigError: bad counts, or an infinite env without ``episodes``.
    """
    for name, value in (("samples", samples), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"specs_for: {name} must be an int, got {value!r}")
    if samples < 1:
        raise ConfigError(f"specs_for: samples must be >= 1, got {samples}")
    if episodes is not None and (
        isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 0
    ):
        raise ConfigError(f"specs_for: episodes must be an int >= 0 or None, got {episodes!r}")
    task_ids = _task_ids(env)
    if task_ids is None:
        if episodes is None:
            raise ConfigError(
                f"{_name(env)} has no finite task list (task_ids() is None): pass "
                "episodes=N for N seeded episodes"
            )
        return [
            EpisodeSpec(seed=seed + k, group_id=f"seed-{seed + k}")
            for k in range(episodes)
            for _ in range(samples)
        ]
    if episodes is not None:
        task_ids = task_ids[:episodes]
    return [
        EpisodeSpec(seed=seed + k, group_id=f"task-{task_id}", task_id=task_id)
        for k, task_id in enumerate(task_ids)
        for _ in range(samples)
    ]


def _name(env: Any) -> str:
    return env if isinstance(env, str) else type(getattr(env, "unwrapped", env)).__name__


def _task_ids(env: Any) -> list[str] | None:
    """``env.task_ids()`` checked (a registered id is made, asked, and closed)."""
    if isinstance(env, str):
        from agentrl.registry import make

        made = make(env)
        try:
            return _task_ids(made)
        finally:
            made.close()
    base = getattr(env, "unwrapped", env)  # gymnasium wrappers hide the env's own methods
    method = getattr(base, "task_ids", None)
    if method is None:
        return None
    ids = method()
    if ids is None:
        return None
    if isinstance(ids, str) or not all(isinstance(i, str) for i in ids):
        raise ConfigError(f"{_name(env)}.task_ids() must return a list of str or None")
    ids = list(ids)
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{_name(env)}.task_ids() returned duplicate ids")
    return ids
