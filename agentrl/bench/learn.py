"""``agentrl bench learn``: does training work? Held-out success, not loss curves.

Three parts, each writing into ``OUT/`` and resumable (a finished run is read back, not
repeated):

* ``default`` -- the default run of ``agentrl train`` (start -> SFT warm-start -> RL):
  held-out success at each phase. RL must add on top of the warm-start.
* ``credit`` -- trajectory-level (GRPO: the episode's reward on every token) against
  turn-level credit (GiGPO: step groups of turns with equal observations; MT-GRPO) on the
  multi-turn env, all from the same warm-started checkpoint with the same budget, over
  several seeds: mean and spread of held-out success and of turns-to-solve.
* ``critic`` -- PPO with a value head (token GAE) against GRPO on the same env and budget.

All RL runs share one vLLM engine (each run first pushes its starting weights into it).
The table goes to stdout, the figures to ``OUT/bench_learn.json``, the curves to
``OUT/bench_learn.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentrl.errors import ConfigError

__all__ = ["METHODS", "LearnBenchConfig", "run_bench", "format_table", "add_arguments", "main"]

#: Method name -> overrides of the RL config (on top of the default run's RL phase).
METHODS: dict[str, tuple[str, ...]] = {
    "grpo": ("algo.advantage=grpo",),
    "gigpo": ("algo.advantage=gigpo",),
    "mt_grpo": ("algo.advantage=mt_grpo",),
    "ppo": ("algo.advantage=gae", "algo.critic=head"),
}
#: Methods each part compares (the first is the baseline).
PARTS: dict[str, tuple[str, ...]] = {"credit": ("grpo", "gigpo", "mt_grpo"), "critic": ("grpo", "ppo")}


@dataclass(frozen=True)
class LearnBenchConfig:
    """What ``agentrl bench learn`` runs."""

    out: str = "runs/bench-learn"
    """Output folder (runs, JSON, PNG); an existing one is resumed."""
    parts: tuple[str, ...] = ("default", "credit", "critic")
    """Parts to run: default, credit, critic."""
    seeds: int = 3
    """Seeds per method in the comparisons."""
    steps: int = 30
    """RL steps per comparison run."""
    sft_checkpoint: str | None = None
    """Warm-started checkpoint the comparisons start from (None: the default part's)."""
    overrides: tuple[str, ...] = ()
    """``key=value`` overrides for every run (``sft.*`` reach the default run's SFT)."""
    credit_methods: tuple[str, ...] = PARTS["credit"]
    """Methods of the credit comparison (the first is the baseline)."""
    eval_episodes: int | None = None
    """Held-out episodes of each comparison run (None: the default run's 200)."""

    def __post_init__(self) -> None:
        unknown = [p for p in self.parts if p not in ("default", *PARTS)]
        if unknown:
            raise ConfigError(f"unknown part(s) {unknown}; choose from default, {', '.join(PARTS)}")
        bad = [m for m in self.credit_methods if m not in METHODS]
        if bad or not self.credit_methods:
            raise ConfigError(f"unknown credit method(s) {bad}; known: {', '.join(METHODS)}")
        if self.eval_episodes is not None and self.eval_episodes < 1:
            raise ConfigError("--eval-episodes must be >= 1")
        if self.seeds < 1 or self.steps < 1:
            raise ConfigError("--seeds and --steps must be >= 1")
        if "default" not in self.parts and self.sft_checkpoint is None and any(
                p in PARTS for p in self.parts):
            raise ConfigError("the comparisons start from a warm-started checkpoint: run the "
                              "default part too or pass --sft-checkpoint DIR")


def _default_part(cfg: LearnBenchConfig) -> dict[str, Any]:
    from agentrl.train.recipes import default_recipe, run_recipe

    run_dir = Path(cfg.out) / "default"
    done = run_dir / "summary.json"
    if done.is_file():
        print(f"default run: reading the finished run in {run_dir}", flush=True)
        return json.loads(done.read_text())
    return run_recipe(default_recipe([f"run_dir={run_dir}", *cfg.overrides]))


def _rl_config(cfg: LearnBenchConfig, method: str, seed: int, start: str) -> Any:
    from agentrl.train.config import load_config
    from agentrl.train.recipes import default_config

    overrides = [o for o in cfg.overrides if not o.startswith(("sft.", "run_dir="))]
    run_dir = Path(cfg.out) / "runs" / f"{method}-s{seed}"
    return load_config(overrides=[
        *METHODS[method], f"trainer.seed={seed}", f"trainer.steps={cfg.steps}",
        f"model.path={start}", f"logging.run_dir={run_dir}", "logging.progress=false",
        *([f"eval.episodes={cfg.eval_episodes}"] if cfg.eval_episodes else []), *overrides,
    ], base=default_config())


def _one_run(config: Any, policy: Any) -> dict[str, Any]:
    """Train (or read back a finished run); held-out figures and the training curve."""
    from agentrl.train.loop import train
    from agentrl.train.metrics import read_metrics

    run_dir = Path(config.logging.run_dir)
    evals_path = run_dir / "eval.json"
    t0 = time.perf_counter()
    if not (evals_path.is_file() and "after" in json.loads(evals_path.read_text())):
        train(config, resume=run_dir.is_dir(), policy=policy)
    evals = json.loads(evals_path.read_text())
    recs = read_metrics(run_dir)
    return {
        "run_dir": str(run_dir), "before": evals["before"], "after": evals["after"],
        "curve": [r.get("success/rate") for r in recs], "wall_s": time.perf_counter() - t0,
    }


def _spread(values: list[float]) -> dict[str, float]:
    vals = [v for v in values if v == v]  # drop NaN
    return {"mean": statistics.fmean(vals) if vals else float("nan"),
            "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": float(len(vals))}


def _compare(cfg: LearnBenchConfig, part: str, start: str, policy: Any,
             runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rows = {}
    methods = cfg.credit_methods if part == "credit" else PARTS[part]
    # seeds outermost: a bench stopped early still has every method at the same seeds
    for seed in range(cfg.seeds):
        for method in methods:
            key = f"{method}-s{seed}"
            if key not in runs:
                print(f"{part}: {method}, seed {seed} ({cfg.steps} steps)", flush=True)
                runs[key] = _one_run(_rl_config(cfg, method, seed, start), policy)
    for method in methods:
        per_seed = [runs[f"{method}-s{seed}"] for seed in range(cfg.seeds)]
        rows[method] = {
            "success_after": _spread([r["after"]["success"] for r in per_seed]),
            "gain": _spread([r["after"]["success"] - r["before"]["success"] for r in per_seed]),
            "turns_to_solve": _spread([r["after"].get("turns_to_solve", float("nan")) for r in per_seed]),
            "success_before": per_seed[0]["before"]["success"],
            "seeds": [r["after"]["success"] for r in per_seed],
        }
    base = methods[0]
    for method, row in rows.items():
        diff = row["success_after"]["mean"] - rows[base]["success_after"]["mean"]
        noise = max(row["success_after"]["std"], rows[base]["success_after"]["std"])
        row["vs_" + base] = {"diff": diff, "beyond_spread": abs(diff) > noise and method != base}
    return rows


def run_bench(cfg: LearnBenchConfig) -> dict[str, Any]:
    """Run the chosen parts; return (and write) the report."""
    from agentrl.train.loop import _make_policy, _quiet_vllm

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    report_path = out / "bench_learn.json"
    report: dict[str, Any] = json.loads(report_path.read_text()) if report_path.is_file() else {}
    report["config"] = dataclasses.asdict(cfg)
    if "default" in cfg.parts:
        report["default"] = _default_part(cfg)
        report_path.write_text(json.dumps(report, indent=1))
    comparisons = [p for p in cfg.parts if p in PARTS]
    if comparisons:
        start = cfg.sft_checkpoint or report["default"]["sft"]["checkpoint"]
        _quiet_vllm(False)
        # one sampler for every run, built as the trainer builds it (runs differ in algo only)
        policy = _make_policy(_rl_config(cfg, "grpo", 0, start), start)
        runs = report.setdefault("runs", {})
        try:
            for part in comparisons:
                report[part] = _compare(cfg, part, start, policy, runs)
                report_path.write_text(json.dumps(report, indent=1))
        finally:
            policy.close()
    _plot(report, out / "bench_learn.png")
    report_path.write_text(json.dumps(report, indent=1))
    return report


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report.get("runs", {})
    methods = sorted({k.rsplit("-s", 1)[0] for k in runs})
    if not methods:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for method in methods:
        curves = [r["curve"] for k, r in runs.items() if k.rsplit("-s", 1)[0] == method]
        n = min(len(c) for c in curves)
        mean = [statistics.fmean(c[i] for c in curves if c[i] is not None) for i in range(n)]
        ax.plot(range(1, n + 1), mean, label=f"{method} ({len(curves)} seeds)")
    ax.set_xlabel("RL step")
    ax.set_ylabel("training success rate (mean over seeds)")
    ax.set_ylim(0, 1.05)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_table(report: dict[str, Any]) -> str:
    lines = []
    d = report.get("default")
    if d:
        def cell(key: str) -> str:
            return f"{d[key]['success']:.3f}" if d.get(key) else "  -  "

        lines += [
            f"default run ({d['env']} {d['env_kwargs']}, {d['held_out_episodes']} held-out episodes)",
            "| start | after SFT | after RL | RL gain | wall min |",
            "|---|---|---|---|---|",
            f"| {cell('start')} | {cell('after_sft')} | {cell('after_rl')} | "
            f"{d['after_rl']['success'] - d['after_sft']['success']:+.3f} | {d['wall_s'] / 60:.1f} |",
            "",
        ]
    for part in PARTS:
        rows = report.get(part)
        if not rows:
            continue
        base = next(iter(rows))
        lines += [f"{part}: same warm-started start, same budget; held-out success after RL",
                  f"| method | seeds | success (mean ± std) | gain over start | turns to solve | vs {base} |",
                  "|---|---|---|---|---|---|"]
        for method, row in rows.items():
            s, g, t = row["success_after"], row["gain"], row["turns_to_solve"]
            vs = row[f"vs_{base}"]
            verdict = "-" if method == base else (
                f"{vs['diff']:+.3f}" + (" (beyond spread)" if vs["beyond_spread"] else " (within spread)"))
            lines.append(f"| {method} | {int(s['n'])} | {s['mean']:.3f} ± {s['std']:.3f} | "
                         f"{g['mean']:+.3f} | {t['mean']:.2f} | {verdict} |")
        lines.append("")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = LearnBenchConfig()
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="overrides for every run (e.g. sft.steps=40 rollout.group_size=4)")
    parser.add_argument("--out", default=d.out, help=f"output folder, resumed if present (default {d.out})")
    parser.add_argument("--parts", default=",".join(d.parts),
                        help="comma-separated: default, credit, critic (default: all)")
    parser.add_argument("--seeds", type=int, default=d.seeds, help=f"seeds per method (default {d.seeds})")
    parser.add_argument("--steps", type=int, default=d.steps,
                        help=f"RL steps per comparison run (default {d.steps})")
    parser.add_argument("--credit-methods", default=",".join(d.credit_methods),
                        help=f"methods of the credit comparison, baseline first (known: {', '.join(METHODS)})")
    parser.add_argument("--eval-episodes", type=int, default=None,
                        help="held-out episodes per comparison run (default: 200)")
    parser.add_argument("--sft-checkpoint", default=None,
                        help="warm-started checkpoint for the comparisons (default: the default part's)")


def main(args: argparse.Namespace) -> int:
    cfg = LearnBenchConfig(out=args.out, parts=tuple(p for p in args.parts.split(",") if p),
                           seeds=args.seeds, steps=args.steps, sft_checkpoint=args.sft_checkpoint,
                           overrides=tuple(args.overrides),
                           credit_methods=tuple(m for m in args.credit_methods.split(",") if m),
                           eval_episodes=args.eval_episodes)
    report = run_bench(cfg)
    print(format_table(report))
    print(f"wrote {Path(cfg.out) / 'bench_learn.json'} and {Path(cfg.out) / 'bench_learn.png'}")
    return 0
