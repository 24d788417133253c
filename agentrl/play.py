"""``agentrl play``: a person types the assistant turns and sees observations and rewards."""

from __future__ import annotations

import sys
from typing import TextIO

from agentrl.registry import make

__all__ = ["play"]

HELP = (
    "Type the assistant's message; an empty line sends it. Commands: /oracle sends the "
    "oracle's action, /quit ends."
)


def _print_messages(messages: list[dict[str, str]], out: TextIO) -> None:
    for m in messages:
        who = m["role"] + (f" ({m['name']})" if m.get("name") else "")
        out.write(f"--- {who} ---\n{m['content']}\n")


def _read_turn(inp: TextIO, out: TextIO) -> str | None:
    out.write("assistant> ")
    out.flush()
    lines: list[str] = []
    while True:
        line = inp.readline()
        if not line:  # EOF
            return "\n".join(lines) if lines else None
        line = line.rstrip("\n")
        if not lines and line.strip() in ("/quit", "/oracle"):
            return line.strip()
        if line == "" and lines:
            return "\n".join(lines)
        if line != "" or lines:
            lines.append(line)


def play(env_id: str, *, seed: int | None = None, inp: TextIO | None = None, out: TextIO | None = None) -> int:
    """Run an interactive episode; returns 0 when it ended, 1 when the player quit."""
    inp = inp or sys.stdin
    out = out or sys.stdout
    env = make(env_id)
    messages, _ = env.reset(seed=seed)
    out.write(f"{env_id} — {HELP}\n")
    _print_messages(messages, out)
    total = 0.0
    try:
        while True:
            action = _read_turn(inp, out)
            if action is None or action == "/quit":
                out.write("\nquit.\n")
                return 1
            if action == "/oracle":
                action = env.unwrapped.oracle_action()
                out.write(f"(oracle) {action}\n")
            messages, reward, terminated, truncated, info = env.step(action)
            total += reward
            _print_messages(messages, out)
            out.write(f"reward {reward:+.2f} (total {total:+.2f})\n")
            if terminated or truncated:
                why = "terminated" if terminated else "truncated"
                out.write(f"Episode {why}; success: {info.get('success')}; total reward {total:+.2f}\n")
                return 0
    finally:
        env.close()
