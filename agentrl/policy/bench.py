"""``agentrl bench policy``: start time and batch throughput of one policy backend.

Prints a table and optionally writes JSON. Two ways of asking for the same tokens:
``B`` concurrent ``generate`` calls (how the rollout collector uses a policy) and one
``generate`` call with ``n=B`` (one request the engine fans out), so the cost of
per-request handling is visible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from agentrl.policy.base import Policy, SamplingParams

__all__ = ["add_arguments", "main", "run_policy_bench"]

_QUESTION = [{"role": "user", "content": "What is 17 + 25?"}]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``agentrl bench policy``."""
    parser.add_argument("--policy", default="vllm:tiny", help="policy spec (default: vllm:tiny)")
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 256], help="batch sizes")
    parser.add_argument("--tokens", type=int, default=128, help="max new tokens per completion")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--kv-cache-gib", type=float, default=1.0, help="KV cache for vllm: on CPU")
    parser.add_argument("--json", "--out", dest="json", default=None, help="also write the results to this file")


async def _tokens_per_s(
    policy: Policy, prompt: list[int], batch: int, tokens: int, seed: int, fan_out: bool
) -> float:
    start = time.perf_counter()
    if fan_out:
        gens = await policy.generate(prompt, SamplingParams(max_tokens=tokens, n=batch, seed=seed))
    else:
        outs = await asyncio.gather(
            *[
                policy.generate(prompt, SamplingParams(max_tokens=tokens, seed=seed * 100_000 + i))
                for i in range(batch)
            ]
        )
        gens = [g for out in outs for g in out]
    return sum(len(g.token_ids) for g in gens) / (time.perf_counter() - start)


def run_policy_bench(
    policy: Policy, batches: list[int], tokens: int, repeats: int
) -> dict[str, Any]:
    """Median tokens/s of ``B`` concurrent calls and of one ``n=B`` call, per batch size."""
    prompt = list(
        policy.tokenizer.apply_chat_template(
            _QUESTION, add_generation_prompt=True, tokenize=True, return_dict=False
        )
    )
    asyncio.run(policy.generate(prompt, SamplingParams(max_tokens=8)))  # warm-up
    rows: dict[str, Any] = {}
    for batch in batches:
        calls, single = [], []
        for rep in range(repeats):  # interleaved, so load changes hit both alike
            calls.append(
                asyncio.run(_tokens_per_s(policy, prompt, batch, tokens, rep, fan_out=False))
            )
            single.append(
                asyncio.run(_tokens_per_s(policy, prompt, batch, tokens, rep, fan_out=True))
            )
        c, s = statistics.median(calls), statistics.median(single)
        rows[str(batch)] = {
            "concurrent_calls_tok_s": round(c),
            "one_call_n_tok_s": round(s),
            "ratio": round(c / s, 2),
        }
    return rows


def main(args: argparse.Namespace) -> int:
    """Run the benchmark; print a table; exit code 0."""
    from agentrl.policy.loader import load_policy

    kw: dict[str, Any] = (
        {"kv_cache_gib": args.kv_cache_gib} if args.policy.startswith("vllm:") else {}
    )
    start = time.perf_counter()
    policy = load_policy(args.policy, **kw)
    start_s = time.perf_counter() - start
    try:
        rows = run_policy_bench(policy, args.batch, args.tokens, args.repeats)
    finally:
        policy.close()
    print(f"policy {args.policy}: start {start_s:.1f} s, {args.tokens} new tokens per completion")
    print(f"{'batch':>6} {'B concurrent calls':>20} {'one call, n=B':>15} {'ratio':>6}")
    for batch, row in rows.items():
        print(
            f"{batch:>6} {row['concurrent_calls_tok_s']:>14} tok/s {row['one_call_n_tok_s']:>9} tok/s {row['ratio']:>6}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "policy": args.policy,
                    "start_s": round(start_s, 1),
                    "tokens": args.tokens,
                    "batches": rows,
                },
                f,
                indent=1,
            )
    return 0
