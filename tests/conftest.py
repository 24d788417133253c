"""Session fixtures shared by all tests: the tiny model, one vLLM engine, one vLLM server.

Each is created on first use only, so a test run that needs none of them pays nothing.
The engine and the server are started at most once per session.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

# Small KV caches: the machine is shared (2 cores, 24 GiB); the tiny model needs little.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

SERVER_START_TIMEOUT_S = 480.0  # 240 s was exceeded at load ~50 on 2 cores


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny chat model (seed 0), built once per session into a temporary folder."""
    from agentrl.models.tiny import build_tiny_chat_model

    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat") / "model", seed=0)


@pytest.fixture(scope="session")
def vllm_policy(tiny_model_path: Path) -> Iterator[Any]:
    """ONE in-process vLLM engine on the tiny model for the whole session.

    Tests that change its weights must restore them (see tests/policy/test_vllm.py).
    """
    from agentrl.policy.vllm_engine import VLLMPolicy

    policy = VLLMPolicy(tiny_model_path, kv_cache_gib=1)
    yield policy
    policy.close()


@dataclass(frozen=True)
class VLLMServer:
    """A running ``vllm.entrypoints.openai.api_server`` on loopback."""

    url: str
    """Base URL, e.g. ``http://127.0.0.1:PORT``."""
    model: str
    """Served model name (the model folder's path)."""
    log: Path
    """File with the server's stdout and stderr."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def vllm_server(
    tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VLLMServer]:
    """ONE real vLLM OpenAI-compatible server on the tiny model, killed at session end."""
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(tiny_model_path), "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--enforce-eager", "--disable-log-stats",
    ]  # fmt: skip
    # Dev mode adds /pause, /collective_rpc, /resume (weight sync, tests/policy/test_vllm_server.py).
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_SERVER_DEV_MODE": "1"}
    with open(log, "wb") as out:
        # Own process group: the server spawns engine/worker processes we must end too.
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, url, log)
        yield VLLMServer(url=url, model=str(tiny_model_path), log=log)
    finally:
        _stop(proc)


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            pytest.fail(
                f"vLLM server exited with code {proc.returncode} before becoming healthy:\n{tail}"
            )
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:]
    pytest.fail(f"vLLM server not healthy after {SERVER_START_TIMEOUT_S:.0f} s:\n{tail}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
