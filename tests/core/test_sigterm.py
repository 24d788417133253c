"""SIGTERM to an agentrl command leaves no vLLM engine processes behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _group_members(pgid: int) -> list[str]:
    """Command names of live processes in process group ``pgid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:80])
        except (OSError, ValueError):
            continue
    return out


@pytest.mark.vllm
def test_sigterm_during_a_vllm_rollout_stops_the_engine(tmp_path: Path, tiny_model_path: Path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentrl.cli", "rollout", "--env", "agentrl/GuessNumber-v0",
         "--policy", f"vllm:{tiny_model_path}", "--episodes", "100000",
         "--out", str(tmp_path / "t.jsonl")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # wait until the engine's processes are up
        if any("VLLM" in m or "EngineCore" in m for m in _group_members(proc.pid)):
            break
        assert proc.poll() is None, "the rollout ended before it could be stopped"
        time.sleep(0.5)
    else:
        pytest.fail("no vLLM engine process appeared")
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) != 0
    deadline = time.monotonic() + 60
    while _group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = _group_members(proc.pid)
    if left:
        os.killpg(proc.pid, signal.SIGKILL)
    assert not left, f"processes left after SIGTERM: {left}"
