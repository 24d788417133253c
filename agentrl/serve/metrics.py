"""Counters and the env-time histogram of ``agentrl serve``, as Prometheus text (format
0.0.4, written here: no global registry, so several servers can live in one process)."""

from __future__ import annotations

__all__ = ["Metrics", "LATENCY_BUCKETS"]

#: Upper bounds (seconds) of the env-time histogram buckets.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)

_HELP = {
    "agentrl_serve_sessions_created_total": ("env", "Sessions created, per env id."),
    "agentrl_serve_sessions_closed_total": ("reason", "Sessions closed: client, idle (reaped), "
                                            "error (the env failed), shutdown."),
    "agentrl_serve_rejected_total": ("reason", "Requests refused before any work."),
    "agentrl_serve_retries_total": ("op", "Retried operations answered from the stored reply."),
    "agentrl_serve_requests_total": ("status", "HTTP replies per status."),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Labelled counters and a per-operation histogram of the time spent in env calls."""

    def __init__(self) -> None:
        self.counters: dict[tuple[str, str], int] = {}
        """``(name, label value) -> count``."""
        self.latency: dict[str, list[float]] = {}  # op -> [count, sum, *bucket counts]

    def count(self, name: str, label: str) -> None:
        key = (name, label)
        self.counters[key] = self.counters.get(key, 0) + 1

    def observe(self, op: str, seconds: float) -> None:
        row = self.latency.get(op)
        if row is None:
            row = self.latency[op] = [0.0] * (2 + len(LATENCY_BUCKETS))
        row[0] += 1
        row[1] += seconds
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                row[2 + i] += 1

    def text(self, gauges: dict[str, float]) -> str:
        """The exposition page: ``gauges`` (name -> value), the counters, the histogram."""
        lines = []
        for name, value in gauges.items():
            lines += [f"# HELP {name} {name.removeprefix('agentrl_serve_')}.",
                      f"# TYPE {name} gauge", f"{name} {value}"]
        for name in sorted({n for n, _ in self.counters}):
            label, text = _HELP.get(name, ("label", "Counter."))
            lines += [f"# HELP {name} {text}", f"# TYPE {name} counter"]
            for (n, value), count in sorted(self.counters.items()):
                if n == name:
                    lines.append(f'{name}{{{label}="{_escape(value)}"}} {count}')
        name = "agentrl_serve_env_seconds"
        lines += [f"# HELP {name} Time in env reset/step per operation.",
                  f"# TYPE {name} histogram"]
        for op, row in sorted(self.latency.items()):
            for bound, count in zip(LATENCY_BUCKETS, row[2:], strict=True):
                lines.append(f'{name}_bucket{{op="{op}",le="{bound}"}} {int(count)}')
            lines.append(f'{name}_bucket{{op="{op}",le="+Inf"}} {int(row[0])}')
            lines.append(f'{name}_sum{{op="{op}"}} {row[1]:.9f}')
            lines.append(f'{name}_count{{op="{op}"}} {int(row[0])}')
        return "\n".join(lines) + "\n"
