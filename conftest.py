"""Repository-level pytest hooks.

``.ci/setup.sh --tests`` starts a Docker engine for the docker-backend tests when none is
running (``.ci/docker.sh``). The README's test command is two steps, ``bash .ci/setup.sh
--tests && .venv/bin/python -m pytest``, so setup cannot stop the engine afterwards: the
whole-suite test session (pytest without path arguments) stops it when it finishes.
Runs with paths (``pytest tests/sandbox``) leave it running; an engine that setup did not
start (no ``started-by-setup`` marker) is never touched.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

#: Where .ci/docker.sh keeps the dockerd pidfile, log and marker.
DOCKERD_STATE = Path(os.environ.get("AGENTRL_DOCKERD_DIR", "/tmp/agentrl-dockerd"))


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_dockerd_started_by_setup(state: Path = DOCKERD_STATE, timeout: float = 20.0) -> str:
    """Stop the dockerd that .ci/docker.sh started (SIGTERM, then SIGKILL after
    ``timeout``); returns what was done ("" when there was nothing to stop)."""
    marker = state / "started-by-setup"
    if not marker.exists():
        return ""
    marker.unlink(missing_ok=True)
    try:
        pid = int((state / "dockerd.pid").read_text().split()[0])
        if Path(f"/proc/{pid}/comm").read_text().strip() != "dockerd":
            return ""
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError, IndexError):
        return ""
    deadline = time.monotonic() + timeout
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _running(pid):
        os.kill(pid, signal.SIGKILL)
        return f"killed dockerd (pid {pid}) started by .ci/setup.sh"
    return f"stopped dockerd (pid {pid}) started by .ci/setup.sh"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if session.config.args_source is not pytest.Config.ArgsSource.TESTPATHS:
        return  # a run with explicit paths: not the whole suite
    done = stop_dockerd_started_by_setup()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if done and reporter is not None:
        reporter.write_line(f"[conftest] {done}")
