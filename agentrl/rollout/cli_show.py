"""``agentrl show FILE``: print one episode of a trajectory file so that a person can read it.

Each section says which tokens it covers and whether they are model tokens (loss mask 1,
trained on) or prompt/env tokens (mask 0). Without a tokenizer the sections show the chat
messages; with ``--tokenizer PATH`` they show the exact decoded tokens (template markup
included), and ``--tokens`` lists every model token with its id and sampling logprob.
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from agentrl.errors import ConfigError
from agentrl.trajectory import Trajectory, iter_jsonl

__all__ = ["add_arguments", "main", "format_trajectory"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="trajectories JSONL (from agentrl rollout)")
    parser.add_argument("--index", type=int, default=0,
                        help="which episode (0-based; negative counts from the end; default 0)")
    parser.add_argument("--tokenizer", default=None,
                        help="model path or 'tiny': show decoded tokens instead of messages")
    parser.add_argument("--tokens", action="store_true",
                        help="with --tokenizer: list each model token (position, id, logprob, text)")


def _segments(traj: Trajectory) -> list[tuple[str, int, int, int | None]]:
    """(kind, start, end, turn) spans covering all tokens: prompt, model turns, env parts."""
    out: list[tuple[str, int, int, int | None]] = [("prompt", 0, traj.prompt_len, None)]
    for i, turn in enumerate(traj.turns):
        out.append(("model", turn.start, turn.end, i))
        nxt = traj.turns[i + 1].start if i + 1 < len(traj.turns) else len(traj.token_ids)
        out.append(("env", turn.end, nxt, i))
    return out


def _message_groups(traj: Trajectory) -> dict[tuple[str, int | None], list[dict[str, Any]]]:
    """Messages by segment: those before the first reply, each reply, what followed it."""
    groups: dict[tuple[str, int | None], list[dict[str, Any]]] = {}
    turn: int | None = None
    for msg in traj.messages:
        if msg.get("role") == "assistant":
            turn = 0 if turn is None else turn + 1
            groups.setdefault(("model", turn), []).append(msg)
        else:
            key = ("prompt", None) if turn is None else ("env", turn)
            groups.setdefault(key, []).append(msg)
    return groups


def format_trajectory(traj: Trajectory, *, index: int = 0, total: int = 1,
                      tokenizer: Any = None, tokens: bool = False) -> str:
    """The readable text of one episode (what ``agentrl show`` prints)."""
    lines = [
        f"episode {index} of {total} | {traj.env_id} | seed {traj.seed} | group {traj.group_id}"
        + (f" | task {traj.task_id}" if traj.task_id is not None else ""),
        f"ended: {traj.end_reason} (terminated={traj.terminated}, truncated={traj.truncated}) | "
        f"success: {traj.success} | turns: {traj.num_turns} | reward {traj.total_reward:.4f} "
        f"{[round(r, 4) for r in traj.rewards]}",
        f"tokens: {len(traj.token_ids)} = {traj.num_model_tokens} model (mask 1) + "
        f"{len(traj.token_ids) - traj.num_model_tokens} prompt/env (mask 0)",
    ]
    if traj.error:
        lines.append(f"error: {traj.error}")
    groups = _message_groups(traj)
    for kind, start, end, turn in _segments(traj):
        if kind == "env" and start == end and not groups.get((kind, turn)):
            continue
        if kind == "model":
            t = traj.turns[turn]
            n = end - start
            mean_lp = sum(traj.logprobs[start:end]) / n if n else 0.0
            head = (f"turn {turn + 1} | tokens [{start}, {end}) | MODEL, mask 1: {n} tokens, "
                    f"mean logprob {mean_lp:.3f} | finish {t.finish_reason} | reward {t.reward:.4f}")
        else:
            what = "prompt" if kind == "prompt" else f"env after turn {turn + 1}"
            head = f"{what} | tokens [{start}, {end}) | mask 0"
        lines.append("")
        lines.append(f"--- {head} ---")
        if tokenizer is not None:
            lines.append(tokenizer.decode(traj.token_ids[start:end], skip_special_tokens=False))
            if tokens and kind == "model":
                for pos in range(start, end):
                    piece = tokenizer.decode([traj.token_ids[pos]], skip_special_tokens=False)
                    lines.append(f"  {pos:>6}  id {traj.token_ids[pos]:>6}  "
                                 f"logprob {traj.logprobs[pos]:>9.4f}  {piece!r}")
        else:
            for msg in groups.get((kind, turn), []):
                name = f" ({msg['name']})" if msg.get("name") else ""
                lines.append(f"[{msg.get('role')}{name}] {msg.get('content')}")
        if kind == "model" and traj.turns[turn].info:
            lines.append(f"  info: {traj.turns[turn].info}")
    lines.append("")
    lines.append(f"--- end: {traj.end_reason} ---")
    return "\n".join(lines)


def main(args: argparse.Namespace, out: TextIO | None = None) -> int:
    import sys

    records = list(iter_jsonl(args.file))
    if not records:
        raise ConfigError(f"{args.file} holds no trajectories")
    index = args.index + len(records) if args.index < 0 else args.index
    if not 0 <= index < len(records):
        raise ConfigError(f"--index {args.index} is out of range: {args.file} holds "
                          f"{len(records)} trajectories (0..{len(records) - 1})")
    tokenizer = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        from agentrl.policy._common import resolve_model_path

        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.tokenizer))
    elif args.tokens:
        raise ConfigError("--tokens needs --tokenizer PATH to decode the token ids")
    text = format_trajectory(records[index], index=index, total=len(records),
                             tokenizer=tokenizer, tokens=args.tokens)
    print(text, file=out or sys.stdout)
    return 0
