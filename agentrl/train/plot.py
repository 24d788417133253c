"""``agentrl plot RUN_DIR``: training curves as PNG, readable at a glance.

Writes ``RUN_DIR/plots/overview.png`` (reward and success with the held-out before/after
figures, losses, KL and entropy, clipping, gradient norm, lengths and turns, time per
phase) and ``RUN_DIR/plots/mismatch.png`` (sampler-learner logprob mismatch per turn
index and per position bucket, over steps).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

from agentrl.errors import ConfigError

__all__ = ["plot_run", "add_arguments", "main"]

# (title, [(metric key, label)], y-axis label)
_PANELS: list[tuple[str, list[tuple[str, str]], str]] = [
    ("Reward", [("reward/mean", "mean reward")], "reward"),
    ("Success", [("success/rate", "train success")], "rate"),
    ("Losses", [("loss/policy", "policy"), ("loss/value", "value"), ("loss/kl", "KL term")], "loss"),
    ("Entropy and KL", [("policy/entropy", "entropy"), ("loss/kl", "KL to ref"),
                        ("is/mismatch_kl", "KL(sampler||learner)")], "nats/token"),
    ("Clipping", [("policy/clip_frac", "PPO clip frac"), ("is/truncated_frac", "IS truncated"),
                  ("is/masked_frac", "IS masked")], "fraction"),
    ("Gradient norm", [("train/grad_norm", "mean"), ("train/grad_norm_max", "max")], "norm"),
    ("Lengths", [("length/model_tokens_mean", "model tokens"), ("length/tokens_mean", "all tokens")],
     "tokens"),
    ("Turns and invalid episodes", [("turns/mean", "turns/episode"),
                                    ("episodes/invalid", "invalid episodes")], "count"),
    ("Time per step", [("time/collect_s", "collect"), ("time/credit_s", "credit"),
                       ("time/update_s", "update"), ("time/sync_s", "sync")], "seconds"),
]


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in records:
        v = r.get(key)
        if isinstance(v, int | float) and math.isfinite(v):
            xs.append(int(r["step"]))
            ys.append(float(v))
    return xs, ys


def _smooth(ys: list[float], k: int) -> list[float]:
    if k <= 1 or len(ys) < 3:
        return ys
    out, acc = [], []
    for y in ys:
        acc.append(y)
        if len(acc) > k:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write the PNGs of a run; return their paths.

    Raises:
        ConfigError: ``run_dir`` has no metrics.jsonl (or an empty one).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agentrl.train.metrics import read_metrics

    run = Path(run_dir)
    records = read_metrics(run)
    if not records:
        raise ConfigError(f"{run} has no metrics.jsonl records: not a training run folder (yet)")
    evals = {}
    if (run / "eval.json").is_file():
        evals = json.loads((run / "eval.json").read_text())
    out_dir = run / "plots"
    out_dir.mkdir(exist_ok=True)
    k = max(1, len(records) // 20)
    last = max(int(r["step"]) for r in records)

    fig, axes = plt.subplots(3, 3, figsize=(15, 11))
    for ax, (title, keys, ylabel) in zip(axes.flat, _PANELS, strict=True):
        drawn = False
        for key, label in keys:
            xs, ys = _series(records, key)
            if not xs:
                continue
            line, = ax.plot(xs, ys, alpha=0.3 if k > 1 else 1.0, lw=1)
            if k > 1:
                ax.plot(xs, _smooth(ys, k), color=line.get_color(), lw=2, label=f"{label} (avg {k})")
            else:
                line.set_label(label)
            drawn = True
        if title == "Success" and evals:
            for name, x, marker in (("before", 0, "o"), ("after", last, "s")):
                if name in evals:
                    ax.plot([x], [evals[name]["success"]], marker, ms=10, color="black",
                            label=f"held-out {name}: {evals[name]['success']:.2f}")
                    drawn = True
            ax.set_ylim(-0.02, 1.02)
        ax.set_title(title, fontsize=12, fontweight="bold")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8, loc="best")
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes,
                    color="gray")
    fig.suptitle(f"{run.name}: {last} steps", fontsize=14)
    fig.tight_layout()
    overview = out_dir / "overview.png"
    fig.savefig(overview, dpi=90)
    plt.close(fig)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5))
    for ax, pattern, title in ((ax1, r"^mismatch/(turn[\d+]+)_abs$", "per turn index"),
                               (ax2, r"^mismatch/(pos[<>=\d]+)_abs$", "per position bucket")):
        keys = sorted({key for r in records for key in r if re.match(pattern, key)},
                      key=lambda s: int(re.findall(r"\d+", s)[0]))
        for key in keys:
            xs, ys = _series(records, key)
            if xs:
                ax.plot(xs, ys, marker=".", label=re.match(pattern, key).group(1))
        ax.set_title(f"sampler-learner |logp diff|, {title}", fontsize=12, fontweight="bold")
        ax.set_xlabel("step")
        ax.set_ylabel("mean |logp_learner - logp_sampler|")
        ax.set_yscale("symlog", linthresh=1e-7)
        ax.grid(alpha=0.3)
        if keys:
            ax.legend(fontsize=8)
    fig.tight_layout()
    mismatch = out_dir / "mismatch.png"
    fig.savefig(mismatch, dpi=90)
    plt.close(fig)
    return [overview, mismatch]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run folder written by `agentrl train`")


def main(args: argparse.Namespace) -> int:
    for path in plot_run(args.run_dir):
        print(path)
    return 0
