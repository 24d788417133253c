"""What each bwrap hardening step costs per sandbox: ``python -m agentrl.bench.sandbox_hardening``.

Runs ``print(1)`` interleaved in: a plain subprocess (baseline), the full bwrap sandbox,
and the sandbox without its cgroup, without the seccomp filter (an allow-all filter
instead), without the pid-1 masks, and without all three. Reports, per variant, the CPU
time of the whole process tree per execution (from a cpuacct cgroup holding this process
and all it starts, so that other load on a shared machine distorts it far less than wall
time) and the wall-clock p50. Turning steps off is done here only, for measurement; the
backend has no switch for the filter or the masks. Needs root for the cpuacct cgroup
(cgroup v1 ``cpuacct`` or v2 ``cpu.stat``); without it, only wall time is reported.

    python -m agentrl.bench.sandbox_hardening [--iterations 60] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

from agentrl.sandbox import Limits
from agentrl.sandbox import _seccomp as seccomp
from agentrl.sandbox import bwrap as bwrap_module

__all__ = ["main", "VARIANTS"]

#: Variant name -> (cgroup on, seccomp filter on, pid-1 masks on); None = plain subprocess.
VARIANTS: dict[str, tuple[bool, bool, bool] | None] = {
    "subprocess": None, "bwrap (all)": (True, True, True),
    "no cgroup": (False, True, True), "no seccomp": (True, False, True),
    "no pid-1 masks": (True, True, False), "none of them": (False, False, False),
}


def _cpu_meter():
    """(CPU seconds used so far by this process tree, a clean-up), or (None, no-op)."""
    name = f"agentrl-bench-{os.getpid()}"
    for root, read in (("/sys/fs/cgroup/cpuacct", lambda d: int(open(f"{d}/cpuacct.usage").read()) / 1e9),
                       ("/sys/fs/cgroup", lambda d: int(open(f"{d}/cpu.stat").read().split()[1]) / 1e6)):
        folder = os.path.join(root, name)
        try:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "cgroup.procs"), "w") as handle:
                handle.write(str(os.getpid()))
            read(folder)
        except (OSError, ValueError, IndexError):
            continue

        def cleanup(root: str = root, folder: str = folder) -> None:
            # Everything still in ours (this process, the sandbox spawner) goes back to
            # the top, then ours is removed.
            with open(os.path.join(folder, "cgroup.procs")) as handle:
                pids = handle.read().split()
            for pid in pids:
                try:
                    with open(os.path.join(root, "cgroup.procs"), "w") as handle:
                        handle.write(pid)
                except OSError:
                    pass  # it exited meanwhile
            os.rmdir(folder)

        return (lambda folder=folder, read=read: read(folder)), cleanup
    return None, lambda: None


def _allow_all_filter() -> bytes:
    import pyseccomp as sc

    fd = os.memfd_create("allow", 0)
    with os.fdopen(os.dup(fd), "wb") as handle:
        sc.SyscallFilter(sc.ALLOW).export_bpf(handle)
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, 1 << 16)
    os.close(fd)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    meter, cleanup = _cpu_meter()
    try:
        return _measure(args, meter)
    finally:
        cleanup()


def _measure(args: argparse.Namespace, meter) -> int:
    full_filter, allow = seccomp.filter_bytes(), _allow_all_filter()
    masks = bwrap_module._PID1_MASKS
    with_cg, without_cg = bwrap_module.BwrapBackend(), bwrap_module.BwrapBackend(cgroups=False)

    def run(variant: tuple[bool, bool, bool] | None) -> None:
        if variant is None:
            subprocess.run(["/usr/bin/python3", "-I", "-c", "print(1)"], capture_output=True,
                           check=True)
            return
        cgroup, filtered, masked = variant
        seccomp._cache["bpf"] = full_filter if filtered else allow
        bwrap_module._PID1_MASKS = masks if masked else ()
        try:
            result = (with_cg if cgroup else without_cg).run_python("print(1)", limits=Limits())
        finally:
            seccomp._cache["bpf"], bwrap_module._PID1_MASKS = full_filter, masks
        if result.stdout != "1\n":
            raise RuntimeError(f"the sandbox failed: {result}")

    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    wall: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for i in range(args.iterations + 3):
        for name, variant in VARIANTS.items():
            used, start = meter() if meter else 0.0, time.perf_counter()
            run(variant)
            if i >= 3:  # warm-up
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(meter() - used if meter else float("nan"))
    base = statistics.median(cpu["subprocess"])
    rows = {name: {"cpu_p50_ms": statistics.median(cpu[name]) * 1e3,
                   "wall_p50_ms": statistics.median(wall[name]) * 1e3,
                   "cpu_over_subprocess": statistics.median(cpu[name]) / base}
            for name in VARIANTS}
    print(f"{'variant':16s} {'CPU p50 ms':>10s} {'x subproc':>9s} {'wall p50 ms':>11s}")
    for name, row in rows.items():
        print(f"{name:16s} {row['cpu_p50_ms']:10.2f} {row['cpu_over_subprocess']:8.2f}x "
              f"{row['wall_p50_ms']:11.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"iterations": args.iterations, "variants": rows,
                                         "load": os.getloadavg()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
