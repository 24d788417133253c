"""Fixtures of the env-server tests: servers on 127.0.0.1, in this process or in a subprocess."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import agentrl  # noqa: F401  (registers the ids)
from agentrl.serve.cli import BackgroundServer
from agentrl.serve.sessions import ServerConfig

CALC = "agentrl/Calculator-v0"
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    """A server in this process (its own thread and loop), token required."""
    with BackgroundServer(ServerConfig(env_ids=(CALC, "agentrl/GuessNumber-v0"), port=0,
                                       token=TOKEN, max_body_bytes=64 * 1024)) as srv:
        yield srv


class ServerProcess:
    """``agentrl serve`` in a subprocess (can be killed and restarted on the same port)."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.args = args
        self.log = tmp / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.url = ""

    def start(self, port: int = 0) -> ServerProcess:
        cmd = [sys.executable, "-m", "agentrl.cli", "serve", CALC, "--port", str(port), *self.args]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = re.findall(r"listening on (http://[\d.]+:(\d+))", self.log.read_text())
            if found and (port == 0 or int(found[-1][1]) == port) and len(found) > self._starts():
                self.url, self.port = found[-1][0], int(found[-1][1])
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                        self._started = len(found)
                        return self
            if self.proc.poll() is not None:
                pytest.fail(f"server exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        pytest.fail(f"server did not start: {self.log.read_text()[-2000:]}")

    _started = 0

    def _starts(self) -> int:
        return self._started

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_path: Path):
    """The tiny model's tokenizer (its chat template renders the env messages)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)
