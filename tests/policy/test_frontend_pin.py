"""FrontendPin: this process's threads leave the CPUs its children are bound to, and come back."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from agentrl.policy._common import FrontendPin

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux CPU affinity and at least 2 CPUs",
)


def test_pin_moves_every_thread_off_a_bound_child_and_unpin_restores() -> None:
    mine = set(os.sched_getaffinity(0))
    worker_cpu = min(mine)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        os.sched_setaffinity(child.pid, {worker_cpu})  # like vLLM binding its worker
        pin = FrontendPin(children=[child.pid])
        assert pin.active and pin.free_cpus == mine - {worker_cpu}

        seen: dict[str, set[int]] = {}
        go, done = threading.Event(), threading.Event()

        def other_thread() -> None:  # a thread that exists before pin() is moved too
            go.wait(5)
            seen["pinned"] = set(os.sched_getaffinity(0))
            done.set()

        thread = threading.Thread(target=other_thread)
        thread.start()
        pin.pin()
        go.set()
        assert done.wait(5)
        thread.join()
        assert seen["pinned"] == mine - {worker_cpu}
        assert set(os.sched_getaffinity(0)) == mine - {worker_cpu}
        pin.unpin()
        assert set(os.sched_getaffinity(0)) == mine
    finally:
        child.kill()
        child.wait()
        os.sched_setaffinity(0, mine)


def test_no_bound_child_is_a_no_op() -> None:
    mine = set(os.sched_getaffinity(0))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:  # a child on all our CPUs is not bound
        pin = FrontendPin(children=[child.pid])
        assert not pin.active
        pin.pin()
        assert set(os.sched_getaffinity(0)) == mine
    finally:
        child.kill()
        child.wait()
