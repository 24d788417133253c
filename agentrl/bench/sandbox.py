"""``agentrl bench sandbox``: latency and throughput of sandboxed execution.

Cases (each runs ``print(1)``):

* ``subprocess`` — a plain, unsandboxed ``python3 -I -c`` subprocess (the baseline);
* ``bwrap`` — a fresh bubblewrap sandbox per execution (with limits and CPU accounting);
* ``bwrap-prestart`` — also a brand-new sandbox per execution, but started ahead of time
  (``BwrapBackend(prestart=2)``); the pool is refilled *between* timed executions, so
  the refill never overlaps any case's timing (its cost shows in ``exec/s``);
* ``bwrap-true`` — a fresh sandbox running ``/bin/true`` (the sandbox's own cost);
* ``session`` — one call into a persistent sandboxed session;
* ``docker`` — a fresh container per execution (docker backend, when an engine answers);
* ``docker-pool`` — a container taken from a pool of started ones (``pool_size=2``),
  refilled between timed executions like ``bwrap-prestart``.

Latency is measured one execution at a time, the cases interleaved (p50, p99);
throughput runs ``--concurrency`` executions at once (a session serves one call at a
time, so its figure is 1/mean latency). Targets: bwrap p50 < 60 ms, session p50 < 5 ms (issue 3),
bwrap p50 within 1.3x of the subprocess baseline (issue 9; what the hardening itself
costs is measured by ``python -m agentrl.bench.sandbox_hardening``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import numpy as np

from agentrl.errors import ConfigError, SandboxError
from agentrl.sandbox import Limits, Status
from agentrl.sandbox.bwrap import BwrapBackend

__all__ = ["add_arguments", "main", "run_benchmark", "summarize"]

TARGETS = {"bwrap_p50_ms": 60.0, "session_p50_ms": 5.0, "bwrap_over_subprocess": 1.3}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``agentrl bench sandbox``."""
    parser.add_argument("--iterations", type=int, default=200,
                        help="timed executions per case (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed executions first")
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 1,
                        help="executions in flight for the throughput figure (default: CPUs)")
    parser.add_argument("--docker-iterations", type=int, default=None,
                        help="timed executions per docker case (default: --iterations, at "
                             "most 30); 0 leaves the docker rows out. They need a reachable "
                             "Docker engine and are skipped, with the reason, without one")
    parser.add_argument("--json", "--out", dest="json", type=Path, default=Path("bench_sandbox.json"),
                        help="where to write the results (default bench_sandbox.json)")


def summarize(latencies_s: list[float]) -> dict[str, float]:
    """p50/p99/mean in milliseconds of per-execution latencies given in seconds."""
    ms = np.asarray(latencies_s, dtype=np.float64) * 1000.0  # (n,)
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "n": int(ms.size)}


def _time_interleaved(cases: dict[str, Callable[[], None]], iterations: int, warmup: int,
                      settle: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Per-case latencies, running the cases round-robin so that all of them see the same
    background load (this machine is shared; a load spike then hits every case alike).
    ``settle`` runs untimed after every execution (it waits for prestart refills)."""
    for _ in range(warmup):
        for fn in cases.values():
            fn()
            settle()
    out: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(iterations):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - start)
            settle()
    return out


def _throughput(fn: Callable[[], None], iterations: int, concurrency: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(fn) for _ in range(iterations)]:
            future.result()
    return iterations / (time.perf_counter() - start)


def run_benchmark(iterations: int = 200, warmup: int = 10, concurrency: int = 2
                  ) -> dict[str, object]:
    """Run every case and return the results (also the JSON written by :func:`main`)."""
    backend = BwrapBackend()
    prestarted = BwrapBackend(prestart=2)
    limits = Limits()
    python = backend.python

    def plain() -> None:
        done = subprocess.run([python, "-I", "-c", "print(1)"], capture_output=True, check=False)
        if done.stdout != b"1\n":
            raise SandboxError(f"baseline subprocess failed: {done.stderr!r}")

    def fresh() -> None:
        if backend.run_python("print(1)", limits=limits).stdout != "1\n":
            raise SandboxError("bwrap print(1) failed")

    def fresh_prestarted() -> None:
        if prestarted.run_python("print(1)", limits=limits).stdout != "1\n":
            raise SandboxError("prestarted bwrap print(1) failed")

    def true() -> None:
        if backend.execute(["/bin/true"], limits=limits).status is not Status.OK:
            raise SandboxError("bwrap /bin/true failed")

    with backend.open_session(limits) as session:
        started = time.perf_counter()
        session.start()
        session_start_ms = (time.perf_counter() - started) * 1000.0

        def call() -> None:
            if session.run("print(1)").stdout != "1\n":
                raise SandboxError("session call failed")

        fns = {"subprocess": plain, "bwrap": fresh, "bwrap-prestart": fresh_prestarted,
               "bwrap-true": true, "session": call}
        try:
            latencies = _time_interleaved(fns, iterations, warmup,
                                          settle=lambda: prestarted.wait_prestarted())
            cases = {name: summarize(values) for name, values in latencies.items()}
            for name, fn in fns.items():
                if name != "session":  # one session serves one call at a time
                    cases[name]["exec_per_s"] = _throughput(fn, iterations, concurrency)
        finally:
            prestarted.close()
        cases["session"]["exec_per_s"] = 1000.0 / cases["session"]["mean_ms"]
        cases["session"]["start_ms"] = session_start_ms
    ratio = cases["bwrap"]["p50_ms"] / cases["subprocess"]["p50_ms"]
    return {
        "cases": cases,
        "bwrap_over_subprocess_p50": ratio,
        "prestart_over_subprocess_p50": (cases["bwrap-prestart"]["p50_ms"]
                                         / cases["subprocess"]["p50_ms"]),
        "targets": TARGETS,
        "meets": {
            "bwrap_p50_ms": cases["bwrap"]["p50_ms"] < TARGETS["bwrap_p50_ms"],
            "session_p50_ms": cases["session"]["p50_ms"] < TARGETS["session_p50_ms"],
            "bwrap_over_subprocess": ratio < TARGETS["bwrap_over_subprocess"],
        },
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python_in_sandbox": python},
        "settings": {"iterations": iterations, "warmup": warmup, "concurrency": concurrency},
    }


def run_docker_cases(iterations: int, warmup: int, concurrency: int) -> dict[str, object]:
    """The ``docker`` and ``docker-pool`` rows (``{"cases": ...}``), or ``{"skipped": why}``
    when no engine is reachable. Measured apart from the bwrap cases: a container costs
    tens of times a bwrap sandbox, so interleaving would only slow the fast cases down."""
    from agentrl.errors import SandboxUnavailableError
    from agentrl.sandbox.docker import DockerBackend

    try:
        fresh = DockerBackend()
        pooled = DockerBackend(pool_size=2)
    except SandboxUnavailableError as err:
        return {"skipped": str(err)}
    limits = Limits()

    def runner(backend: DockerBackend, name: str) -> Callable[[], None]:
        def run() -> None:
            if backend.run_python("print(1)", limits=limits).stdout != "1\n":
                raise SandboxError(f"{name} print(1) failed")
        return run

    def refilled() -> None:  # untimed: the pool is full again before the next execution
        deadline = time.monotonic() + 60
        while pooled.pool is not None and pooled.pool.ready < pooled.pool.size:
            if time.monotonic() > deadline:
                raise SandboxError("the docker container pool did not refill in 60 s")
            time.sleep(0.005)

    fns = {"docker": runner(fresh, "docker"), "docker-pool": runner(pooled, "docker-pool")}
    try:
        latencies = _time_interleaved(fns, iterations, warmup, settle=refilled)
        cases = {name: summarize(values) for name, values in latencies.items()}
        for name, fn in fns.items():
            cases[name]["exec_per_s"] = _throughput(fn, iterations, concurrency)
    finally:
        pooled.close()
        fresh.close()
    return {"cases": cases, "image": fresh.image}


def format_table(results: dict[str, object]) -> str:
    """The human-readable table printed by :func:`main`."""
    cases = cast(dict[str, dict[str, float]], results["cases"])
    lines = [f"{'case':<15} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'exec/s':>9}"]
    for name, row in cases.items():
        lines.append(f"{name:<15} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
                     f"{row['mean_ms']:>8.2f} {row['exec_per_s']:>9.1f}")
    docker = cast(dict[str, object], results.get("docker", {}))
    for name, row in cast(dict[str, dict[str, float]], docker.get("cases", {})).items():
        lines.append(f"{name:<15} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
                     f"{row['mean_ms']:>8.2f} {row['exec_per_s']:>9.1f}")
    if "skipped" in docker:
        lines.append(f"docker rows skipped: {docker['skipped']}")
    lines.append(f"bwrap / subprocess (p50): {results['bwrap_over_subprocess_p50']:.2f}x; "
                 f"bwrap-prestart / subprocess: {results['prestart_over_subprocess_p50']:.2f}x")
    meets = cast(dict[str, bool], results["meets"])
    lines.append("targets: " + ", ".join(
        f"{k} < {TARGETS[k]:g}: {'yes' if ok else 'NO'}" for k, ok in meets.items()))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table, write the JSON; exit code 0."""
    if args.iterations < 1 or args.warmup < 0 or args.concurrency < 1:
        raise ConfigError("--iterations and --concurrency must be >= 1 and --warmup >= 0; "
                          f"got {args.iterations}, {args.concurrency}, {args.warmup}")
    docker_iterations = getattr(args, "docker_iterations", None)
    if docker_iterations is None:
        docker_iterations = min(args.iterations, 30)
    if docker_iterations < 0:
        raise ConfigError(f"--docker-iterations must be >= 0, got {docker_iterations}")
    results = run_benchmark(args.iterations, args.warmup, args.concurrency)
    if docker_iterations:
        results["docker"] = run_docker_cases(docker_iterations, min(args.warmup, 3),
                                             args.concurrency)
    print(format_table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0
