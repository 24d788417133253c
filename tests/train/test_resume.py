"""A run SIGKILLed between checkpoints resumes to exactly the uninterrupted run's weights.

Both runs are separate ``agentrl train`` processes (seeded, CPU, the ``hf`` sampler so no
engine start-up is paid three times); the killed one dies while step 3 of 5 is being
trained, after the step-2 checkpoint and before the step-4 one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from agentrl.train.checkpoint import latest_checkpoint, list_checkpoints
from agentrl.train.data import read_specs

STEPS = 5


def _write_config(tiny_model_path: Path, path: Path) -> Path:
    path.write_text(
        f"model:\n  path: {tiny_model_path}\n"
        "rollout:\n  env: agentrl/GuessNumber-v0\n  env_kwargs: {high: 8, max_turns: 2}\n"
        "  backend: hf\n  max_turns: 2\n  tasks_per_step: 2\n  group_size: 4\n"
        "  max_new_tokens: 8\n  max_context: 256\n  concurrency: 8\n"
        f"trainer:\n  steps: {STEPS}\n  lr: 0.01\n  micro_batch_size: 4\n  minibatches: 2\n"
        "checkpoint:\n  every: 2\n  keep: 5\n"
        "logging:\n  tensorboard: false\n  progress: false\n"
    )
    return path


def _train(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    return subprocess.Popen([sys.executable, "-m", "agentrl.cli", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None and ckpt.name == f"step_{STEPS}"
    return load_file(str(ckpt / "model.safetensors"))


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


def test_sigkill_between_checkpoints_then_resume_equals_uninterrupted(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    cfg = _write_config(tiny_model_path, tmp_path / "run.yaml")
    full, killed = tmp_path / "full", tmp_path / "killed"
    reference = _train("--config", str(cfg), f"logging.run_dir={full}")

    victim = _train("--config", str(cfg), f"logging.run_dir={killed}")
    deadline = time.monotonic() + 300
    # step 3 has started once specs.jsonl holds step 3's records (written after collection)
    while _lines(killed / "specs.jsonl") < 3 * 2 and time.monotonic() < deadline:
        if victim.poll() is not None:
            pytest.fail("the run ended before it could be killed:\n" + victim.stdout.read()[-3000:])
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    _finish(reference)
    done = [step for step, _ in list_checkpoints(killed)]
    assert done and max(done) < STEPS, f"the kill came too late to test anything: {done}"

    out = _finish(_train("--resume", str(killed)))
    assert f"steps {STEPS}" in out, out[-2000:]

    a, b = _weights(full), _weights(killed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"
    # the data cursor: every spec consumed exactly once, the same ones in the same steps
    got = [(r["step"], r["index"], r["seed"]) for r in read_specs(killed)]
    want = [(r["step"], r["index"], r["seed"]) for r in read_specs(full)]
    assert got == want
    assert [i for _, i, _ in got] == list(range(STEPS * 2))
    # metrics: one record per step, none repeated
    assert [int(line.split('"step": ')[1].split(",")[0]) for line in
            (killed / "metrics.jsonl").read_text().splitlines()] == list(range(1, STEPS + 1))
