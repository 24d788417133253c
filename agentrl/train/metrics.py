"""Training metrics: per-step JSONL and TensorBoard, a live progress bar, the mismatch breakdown.

``RUN_DIR/metrics.jsonl`` has one JSON object per step (``{"step": N, "reward/mean": ...}``;
keys are ``section/name``), the file ``agentrl plot`` reads. The same scalars go to
TensorBoard (``RUN_DIR/tensorboard``) when enabled.

:func:`mismatch_breakdown` is the sampler-learner logprob mismatch per turn index and per
position bucket (the number of tokens before the token, i.e. the context length it was
sampled at): mismatch is the first thing users fight, and where it grows says why
(long contexts: attention kernels and precision; later turns: prefix handling).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "MetricsLogger",
    "PhaseTimer",
    "mismatch_breakdown",
    "read_metrics",
    "truncate_metrics",
    "POSITION_BUCKETS",
]

#: Upper bounds (exclusive) of the position buckets of :func:`mismatch_breakdown`.
POSITION_BUCKETS: tuple[int, ...] = (128, 256, 512, 1024, 2048, 4096)


class PhaseTimer:
    """Wall time per phase of a step: ``with timer("collect"): ...`` -> ``time/collect_s``."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            key = f"time/{phase}_s"
            self.times[key] = self.times.get(key, 0.0) + time.perf_counter() - t0


@torch.no_grad()
def mismatch_breakdown(
    learner_logp: torch.Tensor,
    sampler_logp: torch.Tensor,
    mask: torch.Tensor,
    turn_index: torch.Tensor,
    buckets: Sequence[int] = POSITION_BUCKETS,
    max_turns: int = 8,
) -> dict[str, float]:
    """Sampler-learner logprob mismatch per turn index and per position bucket.

    For each group of model tokens: ``abs`` = mean |logp_learner - logp_sampler| and
    ``kl`` = mean k3 estimate of KL(sampler || learner) = mean(r - 1 - log r) with
    r = p_learner / p_sampler. Keys: ``mismatch/turn{k}_abs``, ``mismatch/turn{k}_kl``
    (turns from ``max_turns`` on pooled as ``turn{max_turns}+``), ``mismatch/pos<{b}_abs``,
    ``mismatch/pos<{b}_kl`` (tokens at positions below b and at or above the previous
    bound; the last bucket ``pos>={last}``), and the totals ``mismatch/abs``, ``mismatch/kl``.
    Groups with no token are left out.
    """
    on = mask > 0
    d = (learner_logp - sampler_logp).double()
    k3 = torch.exp(d) - 1.0 - d
    pos = torch.arange(mask.shape[1]).expand_as(mask)
    out: dict[str, float] = {}

    def put(name: str, sel: torch.Tensor) -> None:
        sel = sel & on
        n = int(sel.sum())
        if n:
            out[f"mismatch/{name}_abs"] = float(d[sel].abs().mean())
            out[f"mismatch/{name}_kl"] = float(k3[sel].mean())

    if int(on.sum()):
        out["mismatch/abs"] = float(d[on].abs().mean())
        out["mismatch/kl"] = float(k3[on].mean())
        out["mismatch/max_abs"] = float(d[on].abs().max())
    for k in range(max_turns):
        put(f"turn{k}", turn_index == k)
    put(f"turn{max_turns}+", turn_index >= max_turns)
    low = 0
    for b in buckets:
        put(f"pos<{b}", (pos >= low) & (pos < b))
        low = b
    put(f"pos>={low}", pos >= low)
    return out


def _clean(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class MetricsLogger:
    """Writes each step's scalars to ``metrics.jsonl`` (and TensorBoard), drives the bar."""

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True, progress: bool = True,
                 total_steps: int = 0, initial_step: int = 0) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=initial_step + 1)
        self._bar = None
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=initial_step, desc="train", unit="step",
                             dynamic_ncols=True)

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Append one record (non-finite values are written as null and skipped in TensorBoard)."""
        record: dict[str, Any] = {"step": step}
        for key, value in metrics.items():
            record[key] = value if isinstance(value, str) else _clean(value)
        self._fh.write(json.dumps(record, allow_nan=False) + "\n")
        self._fh.flush()
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, float):
                    self._tb.add_scalar(key, value, step)
            self._tb.flush()

    def progress(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Advance the bar to ``step`` showing reward, success and invalid episodes."""
        if self._bar is None:
            return
        post = {}
        for key, short in (("reward/mean", "reward"), ("success/rate", "success"),
                           ("episodes/invalid", "invalid"), ("loss/policy", "loss")):
            v = _clean(metrics.get(key))
            if v is not None:
                post[short] = f"{v:.3g}"
        self._bar.set_postfix(post, refresh=False)
        self._bar.update(step - self._bar.n)

    def write(self, text: str) -> None:
        """Print a line without breaking the bar."""
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()
        if self._bar is not None:
            self._bar.close()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``RUN_DIR/metrics.jsonl`` (a torn last line from a kill is skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    records = []
    if not path.is_file():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(path: str | Path, last_step: int) -> None:
    """Keep only records with ``step <= last_step`` (on resume: the steps after the
    checkpoint are run again and logged again)."""
    p = Path(path)
    if not p.is_file():
        return
    kept = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if int(rec.get("step", 0)) <= last_step:
            kept.append(line)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
    tmp.replace(p)
