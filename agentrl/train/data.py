"""The task stream of a run: episode spec number ``i`` is a pure function of (env, seed, i).

A run consumes specs 0, 1, 2, ... in order; the checkpoint stores the cursor (how many
were consumed), so a resumed run continues with exactly the next spec: no task is
skipped or repeated (``RUN_DIR/specs.jsonl`` records every consumed spec with its step).

* Envs with a finite task list (``task_ids()``): the tasks not held out for evaluation,
  in a fresh seeded permutation per pass (epoch).
* Generated envs: spec ``i`` is the env seed ``seed * 10**6 + i``; held-out specs use
  seeds from ``eval.seed`` on (default 10**9, far from any training seed).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from agentrl.errors import ConfigError
from agentrl.rollout.spec import EpisodeSpec

__all__ = ["SpecSource", "append_specs", "read_specs", "truncate_specs"]

_RUN_SEED_STRIDE = 10**6


def _task_ids(env: Any) -> list[str] | None:
    """The env's finite task list (``AgentEnv.task_ids()``), or None for generated envs."""
    method = getattr(getattr(env, "unwrapped", env), "task_ids", None)
    ids = method() if method is not None else None
    return None if ids is None else [str(i) for i in ids]


class SpecSource:
    """Deterministic, indexable stream of training specs plus a disjoint held-out set."""

    def __init__(self, env: Any, *, seed: int, eval_episodes: int, eval_seed: int) -> None:
        self.seed = seed
        self.eval_seed = eval_seed
        ids = _task_ids(env)
        self.eval_tasks: list[str] = []
        self.train_tasks: list[str] | None = None
        if ids is not None:
            order = sorted(ids)
            random.Random(f"holdout-{eval_seed}").shuffle(order)  # same split for every run seed
            if eval_episodes >= len(order):
                raise ConfigError(
                    f"eval.episodes={eval_episodes} would hold out all {len(order)} tasks of the env: "
                    "lower it so some remain for training"
                )
            self.eval_tasks = order[:eval_episodes]
            self.train_tasks = sorted(order[eval_episodes:])
        elif seed * _RUN_SEED_STRIDE + _RUN_SEED_STRIDE > eval_seed:
            raise ConfigError(
                f"trainer.seed={seed} puts training env seeds at or above eval.seed={eval_seed}: "
                "raise eval.seed or lower trainer.seed"
            )
        self._perms: dict[int, list[str]] = {}

    def spec(self, i: int) -> EpisodeSpec:
        """Training spec number ``i`` (its group id is ``spec-i``)."""
        if self.train_tasks is None:
            return EpisodeSpec(seed=self.seed * _RUN_SEED_STRIDE + i, group_id=f"spec-{i}")
        n = len(self.train_tasks)
        epoch, k = divmod(i, n)
        if epoch not in self._perms:
            perm = list(self.train_tasks)
            random.Random(f"epoch-{self.seed}-{epoch}").shuffle(perm)
            self._perms = {epoch: perm}  # only the current pass is needed
        return EpisodeSpec(seed=self.seed * _RUN_SEED_STRIDE + i, group_id=f"spec-{i}",
                           task_id=self._perms[epoch][k])

    def take(self, cursor: int, n: int) -> list[EpisodeSpec]:
        """Specs ``cursor .. cursor + n - 1``."""
        return [self.spec(i) for i in range(cursor, cursor + n)]

    def held_out(self, episodes: int) -> list[EpisodeSpec]:
        """The evaluation specs (never produced by :meth:`spec`)."""
        if self.train_tasks is not None:
            return [EpisodeSpec(seed=self.eval_seed + k, task_id=t, group_id=f"eval-{k}")
                    for k, t in enumerate(self.eval_tasks)]
        return [EpisodeSpec(seed=self.eval_seed + k, group_id=f"eval-{k}") for k in range(episodes)]


def _spec_record(step: int, index: int, spec: EpisodeSpec) -> dict[str, Any]:
    return {"step": step, "index": index, "seed": spec.seed, "task_id": spec.task_id,
            "group_id": spec.group_id}


def append_specs(run_dir: str | Path, step: int, cursor: int, specs: list[EpisodeSpec]) -> None:
    """Record the specs consumed by ``step`` (``RUN_DIR/specs.jsonl``)."""
    with open(Path(run_dir) / "specs.jsonl", "a", encoding="utf-8") as fh:
        for k, spec in enumerate(specs):
            fh.write(json.dumps(_spec_record(step, cursor + k, spec)) + "\n")


def read_specs(run_dir: str | Path) -> list[dict[str, Any]]:
    """The consumed-spec records of a run (a torn last line is skipped)."""
    path = Path(run_dir) / "specs.jsonl"
    out = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def truncate_specs(run_dir: str | Path, last_step: int) -> None:
    """Keep the records of steps ``<= last_step`` (a resumed run consumes the rest again)."""
    path = Path(run_dir) / "specs.jsonl"
    if not path.is_file():
        return
    kept = [json.dumps(r) + "\n" for r in read_specs(run_dir) if r["step"] <= last_step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    tmp.replace(path)
