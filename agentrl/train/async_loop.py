"""Asynchronous off-policy training: generation of the next steps overlaps the current update.

Selected with ``trainer.mode=async``; :func:`agentrl.train.loop.train` then takes each
step's trajectories from an :class:`AsyncFeed` instead of collecting them in place, and
tells it when an update (and the weight push) is done. Everything else (credit, learner,
verified sync, checkpoints, metrics) is the same loop.

Schedule, with ``N = rollout.max_staleness``::

    batch j is submitted once update j-N-1 and its weight push are done
    (batches 1..N+1 at the start), on a background event loop, with the streaming
    collector and the step's own sampling seed (rollout_config(config, j)).

While update ``k`` runs, batches ``k+1 .. k+N`` are being generated with the weights the
engine has. The engine takes a push between two requests (vLLM: in-flight requests end
on the old weights, the next ones wait), so one episode's turns can carry two versions;
each turn records its ``weight_version``. An episode's **staleness** at update ``k`` is
the engine's current version minus the oldest version among its turns: the number of
updates the learner is ahead of the oldest weights that wrote it. The schedule bounds it
by ``N``; the admission rule (``rollout.stale_rule``) still checks every episode:
``drop`` leaves out episodes staler than ``N``, ``keep`` trains on them (the learner's
sampler-IS correction, ``algo.is_correction``, reweights by the sampler's logprobs either
way). Per step the metrics record the staleness distribution and, for generated vs
admitted episodes, the mean and p90 of length and turns (``admit/*``): a rule that drops
long episodes more often shows up as a gap there. A batch is used only when all its
episodes have finished, so long episodes are never left behind by the default rule.

Resume: batches in flight at a checkpoint are not saved; the resumed run submits batches
``s+1 .. s+N+1`` again with the same specs and seeds (re-run, on the checkpoint's
weights). The data cursor and ``specs.jsonl`` advance only when a batch is trained, so no
spec is lost or counted twice.
"""

from __future__ import annotations

import concurrent.futures
import statistics
from collections.abc import Sequence
from typing import Any

from agentrl.errors import AgentRLError
from agentrl.train.config import TrainConfig

__all__ = ["AsyncFeed", "episode_staleness", "admission_metrics"]


def episode_staleness(traj: Any, version_now: int) -> int:
    """Updates between the oldest weights that wrote ``traj`` and ``version_now`` (0: none known)."""
    versions = [v for v in traj.weight_versions if v is not None]
    return max(version_now - min(versions), 0) if versions else 0


def _p90(xs: Sequence[float]) -> float:
    s = sorted(xs)
    return float(s[min(len(s) - 1, int(0.9 * len(s)))]) if s else 0.0


def admission_metrics(generated: Sequence[Any], admitted: Sequence[Any]) -> dict[str, float]:
    """Length (tokens) and turn distributions of generated vs admitted episodes, and their gaps."""
    out: dict[str, float] = {}
    for name, trajs in (("generated", generated), ("admitted", admitted)):
        lengths = [len(t.token_ids) for t in trajs]
        turns = [t.num_turns for t in trajs]
        out[f"admit/{name}_len_mean"] = statistics.fmean(lengths) if lengths else 0.0
        out[f"admit/{name}_len_p90"] = _p90(lengths)
        out[f"admit/{name}_turns_mean"] = statistics.fmean(turns) if turns else 0.0
    out["admit/len_gap"] = out["admit/admitted_len_mean"] - out["admit/generated_len_mean"]
    out["admit/turns_gap"] = out["admit/admitted_turns_mean"] - out["admit/generated_turns_mean"]
    out["admit/dropped"] = float(len(generated) - len(admitted))
    return out


class AsyncFeed:
    """Keeps ``rollout.max_staleness`` batches generating ahead of the learner.

    Args:
        config: the run's config (``trainer.mode == "async"``).
        policy: the sampler (takes weight pushes between requests).
        specs: the run's :class:`~agentrl.train.data.SpecSource`.
        step: the last step already trained (0, or the checkpoint's step on resume).
        cursor: the data cursor after ``step``.
    """

    def __init__(self, config: TrainConfig, policy: Any, specs: Any, step: int, cursor: int) -> None:
        from agentrl.policy._common import BackgroundLoop

        self.config, self.policy, self.specs = config, policy, specs
        self.lag = config.rollout.max_staleness
        self._base_step, self._base_cursor = step, cursor
        self._loop = BackgroundLoop("agentrl-async-rollout")
        self._futures: dict[int, concurrent.futures.Future[list[Any]]] = {}
        for j in range(step + 1, step + self.lag + 2):
            self._submit(j)

    def specs_of(self, step: int) -> list[Any]:
        """The episode specs of ``step`` (the same ones the synchronous loop would take)."""
        n = self.config.rollout.tasks_per_step
        return self.specs.take(self._base_cursor + (step - self._base_step - 1) * n, n)

    def _submit(self, step: int) -> None:
        from agentrl.train.loop import _collect, rollout_config

        if step > self.config.trainer.steps or step in self._futures:
            return
        coro = _collect(self.config.rollout.env, self.policy, self.specs_of(step), rollout_config(self.config, step))
        self._futures[step] = self._loop.submit(coro)

    def take(self, step: int) -> tuple[list[Any], dict[str, float]]:
        """Wait for ``step``'s batch; return the admitted trajectories and the staleness metrics."""
        import time

        t0 = time.perf_counter()
        if step not in self._futures:
            self._submit(step)
        generated = self._futures.pop(step).result()
        metrics = {"time/wait_batch_s": time.perf_counter() - t0}
        now = int(getattr(self.policy, "weight_version", 0))
        stale = [episode_staleness(t, now) for t in generated]
        admitted = [t for t, s in zip(generated, stale, strict=True)
                    if s <= self.lag or self.config.rollout.stale_rule == "keep"]
        if not admitted:  # nothing left to learn from: keep the batch rather than skip the step
            admitted, metrics["staleness/forced_keep"] = list(generated), 1.0
        metrics.update({
            "staleness/mean": statistics.fmean(stale) if stale else 0.0,
            "staleness/max": float(max(stale, default=0)),
            "staleness/over_bound": float(sum(s > self.lag for s in stale)),
        })
        for s in range(self.lag + 1):
            metrics[f"staleness/frac_{s}"] = sum(x == s for x in stale) / max(len(stale), 1)
        metrics.update(admission_metrics(generated, admitted))
        return admitted, metrics

    def updated(self, step: int) -> None:
        """Update ``step`` and its weight push are done: the batch ``lag + 1`` ahead may start."""
        self._submit(step + self.lag + 1)

    def close(self) -> None:
        """Cancel the batches still generating and stop the background loop."""
        for fut in self._futures.values():
            fut.cancel()
        for fut in self._futures.values():
            try:
                fut.result(timeout=30)
            except (concurrent.futures.CancelledError, concurrent.futures.TimeoutError, AgentRLError):
                pass  # closing: a batch nobody will train on may end any way it likes
        self._futures.clear()
        self._loop.close()
