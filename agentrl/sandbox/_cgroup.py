"""A memory and process cgroup per bwrap sandbox, where the machine allows it.

rlimits bound each process's address space, but not what a sandbox makes the kernel hold
for it: tmpfs and ``/dev/shm`` pages, SysV shared memory, memfd pages, kernel objects
(inodes, pipes). A cgroup counts all of that. Each sandbox gets its own cgroup with

* ``memory.max`` = ``Limits.memory`` (v1: ``memory.limit_in_bytes``) and no swap
  (``memory.swap.max`` = 0; v1: ``memory.memsw.limit_in_bytes`` = the same limit);
* ``pids.max`` = ``Limits.processes``.

Layout: ``<this process's cgroup>/agentrl-<pid>/s<N>`` in each hierarchy (v2: the unified
one; v1: the ``memory`` and ``pids`` hierarchies), so that the harness's own limits still
apply on top. The sandbox's first process is moved in while bwrap waits on its
``--block-fd``, before any of the program runs. Support is probed once per process;
when it is missing :func:`support` says why and which limits degrade (the backend warns
once at start-up).
"""

from __future__ import annotations

import atexit
import itertools
import os
import threading
from dataclasses import dataclass

__all__ = ["Cgroup", "Support", "support", "create", "spawner_leaf", "DEGRADED"]

_ROOT = "/sys/fs/cgroup"
#: What is lost without cgroups (the start-up warning names these).
DEGRADED = (
    "Limits.memory then bounds each process's address space only (tmpfs, /dev/shm, SysV "
    "shared memory, memfd pages and kernel buffers a sandbox holds are not counted "
    "beyond the size caps of its tmpfs mounts), and Limits.processes is enforced by "
    "RLIMIT_NPROC in the sandbox's user namespace only"
)


@dataclass(frozen=True)
class Support:
    """Whether per-sandbox cgroups work here."""

    ok: bool
    """True when sandboxes get a memory+pids cgroup."""
    version: int
    """1 or 2 (0 when unavailable)."""
    parents: tuple[str, ...]
    """The ``agentrl-<pid>`` parent directories (v2: one; v1: memory, pids)."""
    reason: str
    """Why cgroups are unavailable ("" when ok)."""


class Cgroup:
    """One sandbox's cgroup (one directory per hierarchy)."""

    def __init__(self, dirs: tuple[str, ...], version: int) -> None:
        self.dirs = dirs
        self.version = version
        self._oom_base = 0  # OOM kills counted before this sandbox (cgroups are reused)

    @property
    def procs(self) -> list[str]:
        """The ``cgroup.procs`` files a pid is written to (one per hierarchy)."""
        return [os.path.join(d, "cgroup.procs") for d in self.dirs]

    def set_limits(self, memory: int, processes: int) -> None:
        """Set the memory (no swap) and process limits; raises OSError on failure."""
        if self.version == 2:
            _write(self.dirs[0], "memory.max", memory)
            _write(self.dirs[0], "memory.swap.max", 0, optional=True)
            _write(self.dirs[0], "pids.max", processes)
            return
        mem, pids = self.dirs
        # memsw (memory + swap) must stay >= the memory limit while both change.
        current = int(_read(mem, "memory.limit_in_bytes") or 0)
        order = (("memory.limit_in_bytes", "memory.memsw.limit_in_bytes") if memory <= current
                 else ("memory.memsw.limit_in_bytes", "memory.limit_in_bytes"))
        for name in order:
            _write(mem, name, memory, optional=name.startswith("memory.memsw"))
        _write(pids, "pids.max", processes)

    def add(self, pid: int) -> None:
        """Move ``pid`` in (needs the right to; the spawner writes these files itself)."""
        for path in self.procs:
            with open(path, "w") as handle:
                handle.write(str(pid))

    def _oom_kills(self) -> int:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        for line in (_read(self.dirs[0], name) or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process here for exceeding the memory limit (since
        this cgroup was handed out)."""
        return self._oom_kills() > self._oom_base

    def remove(self) -> None:
        """Release it: kept for reuse when empty (creating and deleting a memory cgroup
        costs the kernel far more than reusing one), else deleted."""
        with _lock:
            empty = all(_read(d, "cgroup.procs") == "" for d in self.dirs)
            if empty and len(_free) < _FREE_MAX and _support and self.dirs[0].startswith(
                    _support[0].parents[0] + "/"):
                _free.append(self)
                return
        self.delete()

    def delete(self) -> None:
        """Delete the directories (once every process in them is gone)."""
        for path in self.dirs:
            try:
                os.rmdir(path)
            except OSError:
                pass  # a straggler still exits; atexit sweeps the parent


_support: list[Support] = []
_lock = threading.Lock()
_counter = itertools.count()
_free: list[Cgroup] = []  # empty cgroups of finished sandboxes, reused by create()
_FREE_MAX = 32
# A forked child must not reuse the parent's free cgroups (both would hand them out).
os.register_at_fork(after_in_child=_free.clear)


def _read(folder: str, name: str) -> str | None:
    try:
        with open(os.path.join(folder, name)) as handle:
            return handle.read()
    except OSError:
        return None


def _write(folder: str, name: str, value: int | str, *, optional: bool = False) -> None:
    try:
        with open(os.path.join(folder, name), "w") as handle:
            handle.write(str(value))
    except OSError:
        if not optional:
            raise


def _own(hierarchy: str) -> str | None:
    """This process's cgroup path in a v1 ``hierarchy`` ("" for v2), from /proc/self/cgroup."""
    text = _read("/proc/self", "cgroup") or ""
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if (hierarchy == "" and controllers == "") or hierarchy in controllers.split(","):
            return path
    return None


def _make_parent(folder: str, run_as: int | None, *, v2_controllers: bool) -> None:
    os.makedirs(folder, exist_ok=True)
    if v2_controllers:
        _write(folder, "cgroup.subtree_control", "+memory +pids")
    if run_as is not None:
        # The spawner (running as run_as) moves sandboxes into children of this folder.
        os.chown(os.path.join(folder, "cgroup.procs"), run_as, run_as)


def _probe(run_as: int | None) -> Support:
    pid = os.getpid()
    unified = _ROOT if os.path.exists(f"{_ROOT}/cgroup.controllers") else f"{_ROOT}/unified"
    available = (_read(unified, "cgroup.controllers") or "").split()
    try:
        if {"memory", "pids"} <= set(available):
            own = _own("")
            if own is None:
                return Support(False, 0, (), "this process is in no cgroup v2")
            base = unified + own.rstrip("/")
            if "memory" not in (_read(base, "cgroup.subtree_control") or "").split():
                _write(base, "cgroup.subtree_control", "+memory +pids")
            parent = f"{base}/agentrl-{pid}"
            _make_parent(parent, run_as, v2_controllers=True)
            return Support(True, 2, (parent,), "")
        mem_own, pids_own = _own("memory"), _own("pids")
        if mem_own is None or pids_own is None:
            return Support(False, 0, (), "neither cgroup v2 with the memory and pids "
                           "controllers nor cgroup v1 memory and pids hierarchies are mounted")
        parents = (f"{_ROOT}/memory{mem_own.rstrip('/')}/agentrl-{pid}",
                   f"{_ROOT}/pids{pids_own.rstrip('/')}/agentrl-{pid}")
        for parent in parents:
            _make_parent(parent, run_as, v2_controllers=False)
        return Support(True, 1, parents, "")
    except OSError as err:
        return Support(False, 0, (), f"cannot create cgroups here ({err.strerror}: "
                                     f"{err.filename}); run as root or delegate a subtree")


def support(run_as: int | None) -> Support:
    """Probe once per process (creating the parent cgroups when it works)."""
    with _lock:
        if not _support or not _support[0].parents or (
                _support[0].ok and not os.path.isdir(_support[0].parents[0])):
            _support[:] = [_probe(run_as)]
            if _support[0].ok:
                atexit.register(_sweep, _support[0].parents)
        return _support[0]


def create(run_as: int | None, memory: int, processes: int) -> Cgroup | None:
    """A new sandbox cgroup with these limits, or None when cgroups are unavailable.
    Raises OSError when creating one fails although support was probed."""
    found = support(run_as)
    if not found.ok:
        return None
    with _lock:
        reused = _free.pop() if _free else None
    if reused is not None:
        try:
            reused.set_limits(memory, processes)
            reused._oom_base = reused._oom_kills()
            return reused
        except OSError:
            reused.delete()
    name = f"s{os.getpid()}-{next(_counter)}"  # unique across forks of this process too
    dirs = tuple(os.path.join(parent, name) for parent in found.parents)
    for folder in dirs:
        os.mkdir(folder)
    group = Cgroup(dirs, found.version)
    try:
        group.set_limits(memory, processes)
        if run_as is not None:
            for path in group.procs:
                os.chown(path, run_as, run_as)
    except OSError:
        group.delete()
        raise
    return group


def spawner_leaf(run_as: int | None) -> str | None:
    """cgroup v2 only: the ``cgroup.procs`` of a leaf for the spawner process. Moving a
    process needs write access to the common ancestor's ``cgroup.procs``, so the spawner
    (running as ``run_as``) must live under ``agentrl-<pid>`` too."""
    found = support(run_as)
    if not found.ok or found.version != 2:
        return None
    leaf = os.path.join(found.parents[0], "spawner")
    os.makedirs(leaf, exist_ok=True)
    return os.path.join(leaf, "cgroup.procs")


def _sweep(parents: tuple[str, ...]) -> None:
    for parent in parents:
        try:
            children = [e.path for e in os.scandir(parent) if e.is_dir()]
        except OSError:
            continue
        for child in children:
            try:
                os.rmdir(child)
            except OSError:
                pass
        try:
            os.rmdir(parent)
        except OSError:
            pass
