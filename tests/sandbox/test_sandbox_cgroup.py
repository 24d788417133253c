"""Per-sandbox cgroups (issue 9, fault 2): limits written, processes placed, cleaned up,
and a clear warning when the machine has none."""

from __future__ import annotations

import os
import warnings

import pytest

from agentrl.sandbox import MIB, Limits, Status, _cgroup
from agentrl.sandbox import _bwrap_util as bwrap_module
from agentrl.sandbox.bwrap import BwrapBackend, LimitsDegradedWarning


def needs_cgroups(backend: BwrapBackend) -> None:
    if backend.cgroups is None or not backend.cgroups.ok:
        pytest.skip(f"no per-sandbox cgroups here: {backend.cgroups}")


def read(folder: str, name: str) -> str:
    with open(os.path.join(folder, name)) as handle:
        return handle.read().strip()


def test_limits_are_written_and_the_cgroup_removed(bwrap):
    needs_cgroups(bwrap)
    group = _cgroup.create(bwrap.run_as, 200 * MIB, 17)
    assert group is not None
    try:
        if group.version == 1:
            assert int(read(group.dirs[0], "memory.limit_in_bytes")) == 200 * MIB
            assert int(read(group.dirs[1], "pids.max")) == 17
        else:
            assert int(read(group.dirs[0], "memory.max")) == 200 * MIB
            assert int(read(group.dirs[0], "pids.max")) == 17
        group.set_limits(100 * MIB, 9)  # lowering (prestarted sandboxes) works too
        assert not group.oom_killed()
    finally:
        group.remove()
    again = _cgroup.create(bwrap.run_as, 300 * MIB, 5)  # an empty one is reused
    assert again is group
    if group.version == 1:
        assert int(read(group.dirs[0], "memory.limit_in_bytes")) == 300 * MIB
    again.delete()
    assert not any(os.path.exists(d) for d in group.dirs)


def test_the_program_runs_inside_its_cgroup_and_nothing_is_left_in_it(bwrap):
    needs_cgroups(bwrap)
    result = bwrap.run_python("print(open('/proc/self/cgroup').read())")
    assert result.status is Status.OK
    # The cgroup namespace shows paths relative to the harness's cgroup.
    names = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in result.stdout.split()}
    key = "memory" if bwrap.cgroups.version == 1 else ""
    assert names[key].startswith(f"/agentrl-{os.getpid()}/s"), names
    # Its cgroup was released, empty, for reuse (prestarted sandboxes of other tests may
    # be alive in cgroups of their own meanwhile).
    released = {os.path.basename(g.dirs[0]): g for g in _cgroup._free}
    mine = os.path.basename(names[key])
    assert mine in released
    assert all(read(d, "cgroup.procs") == "" for d in released[mine].dirs)
    assert len(_cgroup._free) <= _cgroup._FREE_MAX


def test_without_cgroups_tmpfs_escapes_the_memory_limit_as_documented():
    """The degradation the warning describes, measured (cgroups=False): the tmpfs size
    cap is then the only bound on what /tmp holds."""
    backend = BwrapBackend(cgroups=False)
    code = "b = b'x' * (8 << 20)\nfor i in range(24):\n    open(f'/tmp/{i}', 'wb').write(b)\n"
    limits = Limits(memory=64 * MIB, workdir_size=512 * MIB)
    assert backend.run_python(code, limits=limits).status is Status.OK
    if BwrapBackend().cgroups.ok:
        assert BwrapBackend().run_python(code, limits=limits).status is Status.MEMORY_LIMIT


def test_a_clear_warning_names_what_degrades(monkeypatch):
    monkeypatch.setattr(_cgroup, "_support",
                        [_cgroup.Support(False, 0, ("x",), "cannot create cgroups here")])
    monkeypatch.setattr(bwrap_module, "_warned", [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        BwrapBackend(check=False)
        BwrapBackend(check=False)  # once per process
    messages = [str(w.message) for w in caught if w.category is LimitsDegradedWarning]
    assert len(messages) == 1
    assert "cannot create cgroups here" in messages[0]
    assert "Limits.memory" in messages[0] and "Limits.processes" in messages[0]
    assert "tmpfs" in messages[0]


def test_session_memory_is_bounded_by_its_cgroup(bwrap):
    needs_cgroups(bwrap)
    limits = Limits(memory=96 * MIB, workdir_size=1024 * MIB, wall_time=10)
    with bwrap.open_session(limits) as session:
        result = session.run("b = b'x' * (8 << 20)\nfor i in range(40):\n"
                             "    open(f'/dev/shm/{i}', 'wb').write(b)\n")
        assert result.status is Status.MEMORY_LIMIT
        assert session.run("print(2)").stdout == "2\n"


def test_cgroup_v2_layout_on_a_simulated_hierarchy(tmp_path, monkeypatch):
    """The v2 code path (this machine's memory controller is on v1): a fake unified
    hierarchy of plain files; checks what is written where."""
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    own = tmp_path / "system.slice" / "job"
    own.mkdir(parents=True)
    (own / "cgroup.subtree_control").write_text("")
    monkeypatch.setattr(_cgroup, "_ROOT", str(tmp_path))
    monkeypatch.setattr(_cgroup, "_own", lambda h: "/system.slice/job" if h == "" else None)
    monkeypatch.setattr(_cgroup, "_support", [])
    monkeypatch.setattr(_cgroup, "_free", [])
    found = _cgroup.support(None)
    assert found.ok and found.version == 2
    parent = own / f"agentrl-{os.getpid()}"
    assert found.parents == (str(parent),)
    assert (own / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert (parent / "cgroup.subtree_control").read_text() == "+memory +pids"
    group = _cgroup.create(None, 100 * MIB, 7)
    (folder,) = group.dirs
    assert read(folder, "memory.max") == str(100 * MIB)
    assert read(folder, "memory.swap.max") == "0" and read(folder, "pids.max") == "7"
    assert group.procs == [os.path.join(folder, "cgroup.procs")]
    with open(os.path.join(folder, "memory.events"), "w") as handle:
        handle.write("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert group.oom_killed()
    assert _cgroup.spawner_leaf(None) == str(parent / "spawner" / "cgroup.procs")
