"""``agentrl bench serve``: load on one ``agentrl serve`` process over loopback.

``--sessions`` clients (default 1,000) each open a session with :class:`RemoteEnv`, and
only when *all* of them are open (the server holds them concurrently) does any start its
episode: a full Calculator episode with the oracle's actions (worked out on a local twin
of the env, same seed, before the clock starts). Before each step a client waits a random
"think" time, uniform in ``[0, 2 * --think-ms]``, standing in for the policy's generation
(``--think-ms 0``: closed loop, every client steps as fast as it can, which measures the
server's saturation throughput rather than its latency). Then every session is closed.

Reported: sessions/s and steps/s over the play phase, p50/p99/max step latency (client
side: send to reply), open (connect + create) latency, the server's RSS before, with all
sessions open, and after they closed, and an accounting: every episode must end
``terminated`` with reward 1, the server must report that many sessions created and
closed by their client and none left open. Exit code 1 if anything was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import agentrl  # noqa: F401  (registers the ids)
from agentrl.errors import AgentRLError, ConfigError

__all__ = ["LoadResult", "run_load", "start_server", "format_table", "add_arguments", "main"]

ENV_ID = "agentrl/Calculator-v0"


@dataclass(frozen=True)
class LoadResult:
    """One load run."""

    transport: str
    """``ws`` or ``http``."""
    sessions: int
    """Concurrent sessions (all open at once before the episodes start)."""
    think_ms: float
    """Mean think time before each step (0: closed loop)."""
    peak_open: int
    """Sessions the server held at once (its health endpoint, after the open phase)."""
    episodes_ok: int
    """Episodes that ended terminated with reward 1 (the oracle's)."""
    lost: int
    """Sessions not accounted for: failed, wrong result, or left open on the server."""
    steps: int
    """Steps applied."""
    play_s: float
    """Wall time of the play phase (first step sent to last reply)."""
    sessions_per_s: float
    """Episodes completed per second of the play phase."""
    steps_per_s: float
    """Steps per second of the play phase."""
    step_p50_ms: float
    """Median step latency (client side)."""
    step_p99_ms: float
    """99th percentile step latency."""
    step_max_ms: float
    """Slowest step."""
    open_p50_ms: float
    """Median open latency (connect + create + reset)."""
    open_p99_ms: float
    """99th percentile open latency."""
    rss_before_mb: float
    """Server RSS after start-up and a warm-up episode."""
    rss_peak_mb: float
    """Server RSS with every session open (after the play phase)."""
    rss_after_mb: float
    """Server RSS after every session closed."""
    server_cpu_us_per_step: float
    """Server CPU time (user + system) per step over the play phase: independent of other
    load; 1e6 / this is the server's step capacity per core."""
    client_cpu_us_per_step: float
    """This process's (all clients') CPU time per step over the play phase."""
    load_avg: float
    """The machine's 1-minute load average at the end of the run (other processes' load
    inflates the latencies; on a quiet 2-core machine it stays near 2)."""
    errors: list[str]
    """The first few error messages, if any."""


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024  # type: ignore[union-attr]


def start_server(extra: list[str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``agentrl serve`` in a subprocess on a free port; returns it and its URL."""
    cmd = [sys.executable, "-m", "agentrl.cli", "serve", ENV_ID, "--port", "0", *extra]
    out = open(log, "wb")  # noqa: SIM115  (the child writes it for its whole life)
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"listening on (http://\S+)", log.read_text(errors="replace"))
        if found:
            return proc, found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise ConfigError(f"the env server did not start: {log.read_text(errors='replace')[-1500:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _plans(n: int, seed: int) -> list[list[str]]:
    from agentrl.registry import make

    env = make(ENV_ID).unwrapped
    plans = []
    for i in range(n):
        env.reset(seed=seed + i)
        plans.append(env.oracle_actions(env.task))
    return plans


def _closed(metrics: str) -> int:
    """Sessions closed by their client so far (the server's counter)."""
    found = re.search(r'agentrl_serve_sessions_closed_total\{reason="client"\} (\d+)', metrics)
    return int(found.group(1)) if found else 0


async def _server_json(url: str, path: str, token: str | None) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as c:
        r = await c.get(path)
        return r.json() if path.startswith("/v1") else r.text


async def _load(url: str, pid: int, transport: str, sessions: int, think_ms: float,
                seed: int, token: str | None, open_concurrency: int,
                settle_s: float = 6.0) -> LoadResult:
    from agentrl.remote import RemoteEnv

    closed_before = _closed(await _server_json(url, "/metrics", token))
    plans = _plans(sessions, seed)
    rng = random.Random(seed)
    thinks = [[rng.uniform(0, 2 * think_ms) / 1000 for _ in plan] for plan in plans]
    envs = [RemoteEnv(url, ENV_ID, token=token, transport=transport, timeout_s=120,
                      retries=2) for _ in range(sessions)]
    # Warm-up (imports, first connection), then the baseline memory.
    warm = RemoteEnv(url, ENV_ID, token=token, transport=transport)
    await warm.areset(seed=seed)
    for action in plans[0]:
        await warm.astep(action)
    await warm.aclose()
    await asyncio.sleep(0.2)
    rss_before = _rss_mb(pid)
    errors: list[str] = []
    open_lat: list[float] = []
    gate = asyncio.Semaphore(open_concurrency)

    async def open_one(i: int) -> bool:
        async with gate:
            t0 = time.perf_counter()
            try:
                await envs[i].areset(seed=seed + i)
            except AgentRLError as exc:
                errors.append(f"open {i}: {exc}")
                return False
            open_lat.append(time.perf_counter() - t0)
            return True

    opened = await asyncio.gather(*(open_one(i) for i in range(sessions)))
    health = await _server_json(url, "/v1/health", token)
    peak_open = int(health["sessions"])
    step_lat: list[float] = []
    results: list[tuple[float, bool] | None] = [None] * sessions

    async def play(i: int) -> None:
        if not opened[i]:
            return
        reward, terminated = 0.0, False
        try:
            for action, think in zip(plans[i], thinks[i], strict=True):
                if think:
                    await asyncio.sleep(think)
                t0 = time.perf_counter()
                _, reward, terminated, _, _ = await envs[i].astep(action)
                step_lat.append(time.perf_counter() - t0)
        except AgentRLError as exc:
            errors.append(f"play {i}: {exc}")
            return
        results[i] = (reward, terminated)

    t0, server_cpu0, client_cpu0 = time.perf_counter(), _cpu_s(pid), time.process_time()
    await asyncio.gather(*(play(i) for i in range(sessions)))
    play_s = time.perf_counter() - t0
    server_cpu, client_cpu = _cpu_s(pid) - server_cpu0, time.process_time() - client_cpu0
    rss_peak = _rss_mb(pid)

    async def close_one(env: RemoteEnv) -> None:
        async with gate:
            try:
                await env.aclose()
            except AgentRLError as exc:
                errors.append(f"close: {exc}")

    await asyncio.gather(*(close_one(e) for e in envs))
    await asyncio.sleep(settle_s)  # the server trims its heap again at its next reaper pass
    health = await _server_json(url, "/v1/health", token)
    metrics = await _server_json(url, "/metrics", token)
    closed_n = _closed(metrics) - closed_before - 1  # minus the warm-up session
    ok = sum(1 for r in results if r is not None and r == (1.0, True))
    lost = (sessions - ok) + abs(sessions - closed_n) + int(health["sessions"])
    steps = len(step_lat)
    return LoadResult(
        transport=transport, sessions=sessions, think_ms=think_ms, peak_open=peak_open,
        episodes_ok=ok, lost=lost, steps=steps, play_s=play_s,
        sessions_per_s=ok / play_s, steps_per_s=steps / play_s,
        step_p50_ms=_pct(step_lat, 0.5) * 1e3, step_p99_ms=_pct(step_lat, 0.99) * 1e3,
        step_max_ms=max(step_lat, default=float("nan")) * 1e3,
        open_p50_ms=_pct(open_lat, 0.5) * 1e3, open_p99_ms=_pct(open_lat, 0.99) * 1e3,
        rss_before_mb=rss_before, rss_peak_mb=rss_peak, rss_after_mb=_rss_mb(pid),
        server_cpu_us_per_step=server_cpu / max(steps, 1) * 1e6,
        client_cpu_us_per_step=client_cpu / max(steps, 1) * 1e6,
        load_avg=os.getloadavg()[0], errors=errors[:5],
    )


def run_load(transport: str = "ws", sessions: int = 1000, think_ms: float = 1000.0,
             seed: int = 0, token: str | None = "bench-token", open_concurrency: int = 128,
             server_args: tuple[str, ...] = (), log: Path | None = None,
             rounds: int = 1, settle_s: float = 6.0) -> list[LoadResult]:
    """Start a server, run the load ``rounds`` times against it (new seeds each round: a
    later round's RSS shows whether memory grows), stop it."""
    import uvloop

    log = log or Path(f"/tmp/agentrl-bench-serve-{os.getpid()}.log")
    extra = ["--max-sessions", str(sessions + 16), *server_args]
    if token:
        extra += ["--token", token]
    proc, url = start_server(extra, log)
    try:
        gc.collect()
        return [uvloop.run(_load(url, proc.pid, transport, sessions, think_ms,
                                 seed + r * sessions, token, open_concurrency, settle_s))
                for r in range(rounds)]
    finally:
        _stop(proc)


def format_table(rows: list[LoadResult]) -> str:
    head = ("transport", "sessions", "think ms", "held", "ok", "lost", "sess/s", "steps/s",
            "step p50 ms", "step p99 ms", "open p99 ms", "RSS MB before/peak/after",
            "CPU µs/step server/client", "load")
    lines = [" | ".join(head), " | ".join("-" * len(h) for h in head)]
    for r in rows:
        lines.append(" | ".join([
            r.transport, str(r.sessions), f"{r.think_ms:g}", str(r.peak_open), str(r.episodes_ok),
            str(r.lost), f"{r.sessions_per_s:.0f}", f"{r.steps_per_s:.0f}",
            f"{r.step_p50_ms:.1f}", f"{r.step_p99_ms:.1f}", f"{r.open_p99_ms:.0f}",
            f"{r.rss_before_mb:.0f} / {r.rss_peak_mb:.0f} / {r.rss_after_mb:.0f}",
            f"{r.server_cpu_us_per_step:.0f} / {r.client_cpu_us_per_step:.0f}",
            f"{r.load_avg:.1f}"]))
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sessions", type=int, default=1000, help="concurrent sessions (default 1000)")
    p.add_argument("--transport", nargs="+", default=["ws"], choices=["ws", "http"],
                   help="client transport(s) to measure (default ws)")
    p.add_argument("--think-ms", type=float, nargs="+", default=[1000.0],
                   help="mean think time before each step; several values: one run each "
                   "(default 1000; 0 = closed loop, saturation)")
    p.add_argument("--seed", type=int, default=0, help="first env seed (default 0)")
    p.add_argument("--rounds", type=int, default=1,
                   help="load rounds against the same server (default 1; 2+: RSS growth check)")
    p.add_argument("--env-threads", type=int, default=0, help="server --env-threads (default 0)")
    p.add_argument("--json", "--out", dest="out", default="bench_serve.json",
                   help="JSON report (default bench_serve.json)")


def main(args: argparse.Namespace) -> int:
    if args.sessions < 1:
        raise ConfigError(f"--sessions must be >= 1, got {args.sessions}")
    rows = []
    for transport in args.transport:
        for think in args.think_ms:
            runs = run_load(transport, args.sessions, think, args.seed, rounds=args.rounds,
                            server_args=("--env-threads", str(args.env_threads)))
            rows += runs
            for line in format_table(runs).splitlines()[2:]:
                print(line, flush=True)
    print()
    print(format_table(rows))
    for r in rows:
        for e in r.errors:
            print(f"  {r.transport} think {r.think_ms:g}: {e}")
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform()},
              "env": ENV_ID, "runs": [asdict(r) for r in rows]}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
    return 1 if any(r.lost for r in rows) else 0
