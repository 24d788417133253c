"""Checkpoints: atomic, every N steps, the last K kept, everything needed to continue exactly.

``RUN_DIR/checkpoints/step_N/`` holds

* the model as a transformers checkpoint (``config.json``, ``model.safetensors``, the
  tokenizer): ``AutoModelForCausalLM.from_pretrained(step_N)`` and ``vllm:step_N`` load it;
* ``critic.safetensors`` (the value head, or the separate critic model with its head);
* ``trainer_state.pt``: optimizer and scheduler state, and the RNG states of python,
  numpy and torch;
* ``state.json``: the step, the data cursor (how many episode specs were consumed) and
  whatever else the loop needs to continue (written last).

A checkpoint is written into ``checkpoints/.tmp-step_N-PID`` (every file flushed to disk)
and renamed to ``step_N`` in one ``rename``: a process killed at any moment leaves either
the complete folder or a temporary one, which :func:`latest_checkpoint` ignores and
:func:`clean_partial` deletes. Old checkpoints are removed only after the new one exists.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agentrl.errors import CheckpointError

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "clean_partial",
    "rng_state",
    "set_rng_state",
]

_STEP_DIR = re.compile(r"^step_(\d+)$")
STATE_FILE = "state.json"
TRAINER_FILE = "trainer_state.pt"
CRITIC_FILE = "critic.safetensors"


def rng_state() -> dict[str, Any]:
    """The RNG states of python, numpy and torch (CPU, and CUDA where present)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run as (step, folder), oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        m = _STEP_DIR.match(child.name)
        if m and (child / STATE_FILE).is_file():
            found.append((int(m.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def clean_partial(run_dir: str | Path) -> int:
    """Delete temporary folders left by a process killed while writing; return how many."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return 0
    gone = 0
    for child in root.iterdir():
        if child.name.startswith((".tmp-", ".old-")):
            shutil.rmtree(child, ignore_errors=True)
            gone += 1
    return gone


def _fsync_tree(path: Path) -> None:
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        with open(file, "rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    model: Any,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: Mapping[str, Any],
    critic: torch.nn.Module | None = None,
    critic_optimizer: torch.optim.Optimizer | None = None,
    keep: int = 2,
) -> Path:
    """Write ``checkpoints/step_{step}`` atomically, then keep only the newest ``keep``.

    Args:
        model: a transformers model (``save_pretrained``; safetensors).
        tokenizer: saved beside it so the folder is a complete checkpoint.
        optimizer, scheduler: their ``state_dict()`` is saved.
        state: JSON-safe loop state (data cursor, counters); ``step`` is added.
        critic, critic_optimizer: the value model and its optimizer, if any.
        keep: how many complete checkpoints to keep.
    """
    from safetensors.torch import save_file

    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step}"
    tmp = root / f".tmp-step_{step}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    trainer = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
    }
    if critic is not None:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in critic.state_dict().items()},
                  str(tmp / CRITIC_FILE))
        if critic_optimizer is not None:
            trainer["critic_optimizer"] = critic_optimizer.state_dict()
    torch.save(trainer, tmp / TRAINER_FILE)
    (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}, indent=1), encoding="utf-8")
    _fsync_tree(tmp)
    if final.exists():  # a re-run of the same step (after a resume): replace it
        old = root / f".old-step_{step}-{os.getpid()}"
        final.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    tmp.rename(final)
    _fsync_dir(root)
    for _, path in list_checkpoints(run_dir)[:-keep]:
        trash = root / f".old-{path.name}-{os.getpid()}"
        path.rename(trash)  # atomic: a kill mid-delete leaves only an ignored .old- folder
        shutil.rmtree(trash, ignore_errors=True)
    return final


def load_checkpoint(
    path: str | Path,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    critic: torch.nn.Module | None = None,
    critic_optimizer: torch.optim.Optimizer | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Restore optimizer, scheduler, critic and RNG states from ``path``; return ``state.json``.

    The model itself is loaded by the caller with ``from_pretrained(path)`` (it must exist
    before its optimizer can be built).

    Raises:
        CheckpointError: the folder is missing a file or does not match the run.
    """
    p = Path(path)
    for name in (STATE_FILE, TRAINER_FILE):
        if not (p / name).is_file():
            raise CheckpointError(f"checkpoint {p} has no {name}; it is incomplete or not a checkpoint")
    state = json.loads((p / STATE_FILE).read_text(encoding="utf-8"))
    # Our own file, written by save_checkpoint: it holds numpy RNG state, which the
    # weights-only unpickler refuses.
    trainer = torch.load(p / TRAINER_FILE, map_location="cpu", weights_only=False)
    optimizer.load_state_dict(trainer["optimizer"])
    scheduler.load_state_dict(trainer["scheduler"])
    if critic is not None:
        from safetensors.torch import load_file

        if not (p / CRITIC_FILE).is_file():
            raise CheckpointError(
                f"checkpoint {p} has no {CRITIC_FILE} but this run has a critic (algo.critic "
                "differs from the run that wrote it)"
            )
        critic.load_state_dict(load_file(str(p / CRITIC_FILE)))
        if critic_optimizer is not None and "critic_optimizer" in trainer:
            critic_optimizer.load_state_dict(trainer["critic_optimizer"])
    if restore_rng:
        set_rng_state(trainer["rng"])
    return state
