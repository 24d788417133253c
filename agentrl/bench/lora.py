"""``agentrl bench lora``: LoRA against full fine-tuning, and the two ways to sync LoRA to vLLM.

* **learner** -- per model, full fine-tuning vs LoRA (``--rank``, all linear layers): time
  per optimizer step (forward + backward + AdamW on one batch of ``--batch`` x
  ``--length`` tokens, policy-gradient loss through the trainer's ``token_logprobs``), the
  trainable parameters, the bytes of weights + gradients + AdamW state, and the peak RSS
  of a fresh process doing only that (each configuration runs in its own subprocess).
* **sync** (``--sync``, tiny model) -- pushing a trained adapter into the vLLM engine
  (a) merged into full weights (``reload_weights``, what the trainer does) vs (b) vLLM's
  own adapter loading (engine with ``enable_lora``, a new ``LoRARequest`` per version):
  seconds per sync, generation time of a fixed batch afterwards, and the max logprob
  difference to the learner's adapted model on a probe text (correctness).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["measure_learner", "measure_sync", "add_arguments", "main"]


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure_learner(model_path: str, rank: int, batch: int, length: int, repeats: int) -> dict[str, Any]:
    """One configuration (rank 0 = full fine-tuning), in this process."""
    import torch
    from transformers import AutoModelForCausalLM

    from agentrl.models.logprobs import token_logprobs
    from agentrl.train.config import LoraSection
    from agentrl.train.lora import trainable_parameters, wrap_lora

    torch.manual_seed(0)
    rss0 = _rss_mib()
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    if rank:
        model = wrap_lora(model, LoraSection(r=rank, alpha=2.0 * rank))
    model.eval()
    trainable, total = trainable_parameters(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    vocab = int(model.config.get_text_config().vocab_size)
    ids = torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(1))
    adv = torch.randn(batch, length, generator=torch.Generator().manual_seed(2))
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        logp = token_logprobs(model, ids)
        loss = -(logp * adv).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:  # the first step allocates the optimizer state: not timed
            times.append(time.perf_counter() - t0)
    state = sum(p.numel() for p in model.parameters()) + 3 * trainable  # weights + grad + 2 Adam moments
    return {"model": Path(model_path).name, "rank": rank, "trainable_params": trainable,
            "total_params": total, "step_s_median": statistics.median(times),
            "step_s_min": min(times), "train_state_mib": state * 4 / 2**20,
            "peak_rss_mib": _rss_mib(), "rss_at_start_mib": rss0}


def _subprocess_learner(model_path: str, rank: int, args: argparse.Namespace) -> dict[str, Any]:
    code = ("import json,sys; from agentrl.bench.lora import measure_learner; "
            f"print(json.dumps(measure_learner({model_path!r}, {rank}, {args.batch}, {args.length}, {args.repeats})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _probe_logprobs(policy: Any, ids: list[int], lora: Any = None) -> list[float]:
    from vllm import SamplingParams as VSamplingParams
    from vllm.inputs import TokensPrompt

    async def run() -> list[float]:
        final = None
        async for out in policy._engine.generate(
            TokensPrompt(prompt_token_ids=ids),
            VSamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0),
            f"probe-{time.monotonic_ns()}", lora_request=lora,
        ):
            final = out
        return [float(pos[t].logprob) for pos, t in zip(final.prompt_logprobs[1:], ids[1:], strict=True)]

    return policy._loop.run_sync(run())


def _generate(policy: Any, prompts: list[list[int]], tokens: int, lora: Any = None) -> float:
    import asyncio

    from vllm import SamplingParams as VSamplingParams
    from vllm.inputs import TokensPrompt

    async def one(i: int, ids: list[int]) -> None:
        params = VSamplingParams(max_tokens=tokens, min_tokens=tokens, temperature=1.0)
        async for _ in policy._engine.generate(TokensPrompt(prompt_token_ids=ids), params,
                                               f"g{i}-{time.monotonic_ns()}", lora_request=lora):
            pass

    async def run() -> None:
        await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))

    t0 = time.perf_counter()
    policy._loop.run_sync(run())
    return time.perf_counter() - t0


def measure_sync(model_path: str, rank: int, syncs: int) -> dict[str, Any]:
    """Merged push vs vLLM adapter loading, on the given (small) model."""
    import torch
    from transformers import AutoModelForCausalLM
    from vllm.lora.request import LoRARequest

    from agentrl.models.logprobs import token_logprobs
    from agentrl.policy.vllm_engine import VLLMPolicy
    from agentrl.train.config import LoraSection
    from agentrl.train.lora import MergedView, wrap_lora

    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model = wrap_lora(base, LoraSection(r=rank, alpha=2.0 * rank), seed=0).eval()
    gen = torch.Generator().manual_seed(0)

    def perturb() -> None:  # stands in for an optimizer step on the adapters
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.add_(0.05 * torch.randn(p.shape, generator=gen))

    prompts = [[(7 * i + j) % 200 + 10 for j in range(24)] for i in range(32)]
    out: dict[str, Any] = {"model": Path(model_path).name, "rank": rank, "syncs": syncs}
    policy = VLLMPolicy(model_path, kv_cache_gib=1)
    ids = policy.tokenizer.encode("Probe 17 + 25 = 42. The weather is fine today.", add_special_tokens=False)
    try:
        times, diffs, gens = [], [], []
        for _ in range(syncs):
            perturb()
            t0 = time.perf_counter()
            policy.update_weights(MergedView(model), verify=False)
            times.append(time.perf_counter() - t0)
            with torch.no_grad():
                mine = token_logprobs(model, torch.tensor([ids]))[0, 1:]
            diffs.append(float((mine - torch.tensor(_probe_logprobs(policy, ids))).abs().max()))
            gens.append(_generate(policy, prompts, 16))
        out["merge"] = {"sync_s_median": statistics.median(times), "generate_s_median": statistics.median(gens),
                        "max_logprob_diff": max(diffs)}
    finally:
        policy.close()
    policy = VLLMPolicy(model_path, kv_cache_gib=1,
                        engine_kwargs={"enable_lora": True, "max_lora_rank": max(rank, 8), "max_loras": 1})
    try:
        times, diffs, gens = [], [], []
        with tempfile.TemporaryDirectory() as tmp:
            for version in range(1, syncs + 1):
                perturb()
                t0 = time.perf_counter()
                folder = Path(tmp) / f"v{version}"
                model.save_pretrained(folder)
                req = LoRARequest(f"v{version}", version, str(folder))
                lp = _probe_logprobs(policy, ids, req)  # the first request loads the adapter
                times.append(time.perf_counter() - t0)
                with torch.no_grad():
                    mine = token_logprobs(model, torch.tensor([ids]))[0, 1:]
                diffs.append(float((mine - torch.tensor(lp)).abs().max()))
                gens.append(_generate(policy, prompts, 16, req))
        out["vllm_lora"] = {"sync_s_median": statistics.median(times),
                            "generate_s_median": statistics.median(gens), "max_logprob_diff": max(diffs)}
    finally:
        policy.close()
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", default=["tiny"], help="model folders or 'tiny' (default tiny)")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank (default 8)")
    parser.add_argument("--batch", type=int, default=8, help="sequences per step (default 8)")
    parser.add_argument("--length", type=int, default=256, help="tokens per sequence (default 256)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps (default 5)")
    parser.add_argument("--sync", action="store_true", help="also compare merged sync vs vLLM adapter loading (tiny)")
    parser.add_argument("--syncs", type=int, default=5, help="syncs timed per method (default 5)")
    parser.add_argument("--out", default="runs/bench-lora.json", help="JSON output (default runs/bench-lora.json)")


def main(args: argparse.Namespace) -> int:
    from agentrl.policy._common import resolve_model_path

    rows = []
    print(f"{'model':<16} {'mode':<8} {'trainable':>11} {'step s':>8} {'state MiB':>10} {'peak RSS MiB':>13}")
    for name in args.models:
        path = str(resolve_model_path(name))
        for rank in (0, args.rank):
            r = _subprocess_learner(path, rank, args)
            rows.append(r)
            mode = f"lora r{rank}" if rank else "full"
            print(f"{r['model'][:16]:<16} {mode:<8} {r['trainable_params']:>11,} {r['step_s_median']:>8.3f} "
                  f"{r['train_state_mib']:>10.1f} {r['peak_rss_mib']:>13.0f}", flush=True)
    result: dict[str, Any] = {"learner": rows, "batch": args.batch, "length": args.length}
    if args.sync:
        s = measure_sync(str(resolve_model_path(args.models[0])), args.rank, args.syncs)
        result["sync"] = s
        for key in ("merge", "vllm_lora"):
            m = s[key]
            print(f"sync {key:<10} {m['sync_s_median'] * 1e3:8.1f} ms/sync   generate {m['generate_s_median']:.3f} s"
                  f"   max |dlogp| {m['max_logprob_diff']:.2e}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
