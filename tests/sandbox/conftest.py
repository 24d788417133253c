"""Fixtures for the sandbox tests: real backends (bwrap always; docker only with an engine)."""

from __future__ import annotations

import os
import warnings

import pytest

from agentrl.sandbox.bwrap import BwrapBackend
from agentrl.sandbox.local import LocalBackend, UnisolatedWarning


@pytest.fixture(scope="session")
def bwrap() -> BwrapBackend:
    # No skip: bubblewrap is required in CI (.ci/run installs it); a broken one must fail.
    return BwrapBackend()


@pytest.fixture(scope="session")
def local() -> LocalBackend:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnisolatedWarning)
        return LocalBackend()


_docker: dict[str, object] = {}


def docker_backend_or_skip(pooled: bool = False):
    """A DockerBackend on a live engine (probed once; ``pooled``: with a pool of started
    containers), else skip with the reason. ``.ci/setup.sh --tests`` starts an engine and
    builds the image, so in CI these run."""
    from agentrl.errors import SandboxUnavailableError
    from agentrl.sandbox.docker import DockerBackend

    key = "pooled" if pooled else "backend"
    if "reason" not in _docker and key not in _docker:
        try:
            _docker[key] = DockerBackend(pool_size=4 if pooled else 0)
        except SandboxUnavailableError as err:
            _docker["reason"] = str(err)  # the error already says what is missing
    if "reason" in _docker:
        pytest.skip(str(_docker["reason"]))
    return _docker[key]


@pytest.fixture(scope="session", autouse=True)
def _close_docker_backends():
    yield
    for key in ("backend", "pooled"):
        backend = _docker.pop(key, None)
        if backend is not None:
            backend.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def prestarted():
    """bwrap with a pool of prestarted sandboxes (the prestart execution path)."""
    backend = BwrapBackend(prestart=2)
    yield backend
    backend.close()


class _Prestarted:
    """Makes every execution take the prestart path: waits for a ready sandbox first."""

    def __init__(self, backend: BwrapBackend) -> None:
        self.backend = backend

    def __getattr__(self, name: str):
        if name in ("execute", "run_python"):
            assert self.backend.wait_prestarted(60)
        return getattr(self.backend, name)


@pytest.fixture(params=["bwrap", "bwrap-prestart",
                        pytest.param("docker", marks=pytest.mark.docker),
                        pytest.param("docker-pool", marks=pytest.mark.docker)])
def isolated(request: pytest.FixtureRequest, bwrap: BwrapBackend, prestarted: BwrapBackend):
    """Every available isolating backend (adversarial cases that need isolation)."""
    if request.param.startswith("docker"):
        return docker_backend_or_skip(pooled=request.param == "docker-pool")
    return bwrap if request.param == "bwrap" else _Prestarted(prestarted)


@pytest.fixture(params=["bwrap", "bwrap-prestart", "local",
                        pytest.param("docker", marks=pytest.mark.docker)])
def any_backend(request: pytest.FixtureRequest, bwrap: BwrapBackend, local: LocalBackend,
                prestarted: BwrapBackend):
    """Every available backend, local included (cases where rlimits alone are the defence)."""
    if request.param == "docker":
        return docker_backend_or_skip()
    if request.param == "bwrap-prestart":
        return _Prestarted(prestarted)
    return {"bwrap": bwrap, "local": local}[request.param]


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if marker.encode() in handle.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found
