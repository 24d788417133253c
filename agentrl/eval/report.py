"""Evaluation reports: JSON (machines), Markdown (a table to paste), one self-contained HTML
page with inline SVG charts (success by env with 95% intervals, failure taxonomy)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from agentrl.eval.run import EvalRun
from agentrl.eval.score import FAILURE_KINDS, bfcl_overall, records_json, summarize_env

__all__ = ["build_report", "to_markdown", "to_html", "write_reports"]

_COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac", "#3d3d3d"]


def build_report(run: EvalRun, meta: dict[str, Any]) -> dict[str, Any]:
    """The JSON report: metadata, per-env figures, BFCL overall (if any), all records."""
    per_env = {e: summarize_env(recs, run.wall_s.get(e, 0.0)) for e, recs in run.records.items()}
    return {"meta": meta, "envs": per_env, "bfcl": bfcl_overall(per_env),
            "records": {e: records_json(r) for e, r in run.records.items()}}


def _short(env_id: str) -> str:
    name = env_id.split("/")[-1]
    return name[5:-3] if name.startswith("BFCL-") and name.endswith("-v0") else name


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def to_markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    lines = [f"# agentrl eval: {meta.get('policy', '?')}", "",
             f"Command: `{meta.get('command', '')}`", "",
             "| env | episodes | success % | 95% CI | pass@k | pass^k | turns | call validity % | tokens/ep | s/ep | top failures |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for env_id, s in report["envs"].items():
        k = str(s["samples"])
        fails = ", ".join(f"{name} {n}" for name, n in list(s["failures"].items())[:3]) or "—"
        lines.append(
            f"| {_short(env_id)} | {s['episodes']} | {_pct(s['success_rate'])} | "
            f"{_pct(s['ci95'][0])}–{_pct(s['ci95'][1])} | {_pct(s['pass_at_k'].get(k))} (k={k}) | "
            f"{_pct(s['pass_hat_k'].get(k))} | {s['mean_turns']:.2f} | {_pct(s['tool_call_validity'])} | "
            f"{s['mean_model_tokens']:.0f} | {s['mean_time_s']:.2f} | {fails} |")
    bfcl = report.get("bfcl")
    if bfcl:
        groups = ", ".join(f"{g} {_pct(v)}" for g, v in bfcl["groups"].items())
        lines += ["", f"**BFCL v4 overall (partial): {_pct(bfcl['overall'])}%** — {groups}. "
                  f"{bfcl['note']}. Missing: {', '.join(bfcl['missing_categories'])}."]
    return "\n".join(lines) + "\n"


def _bar_chart(report: dict[str, Any]) -> str:
    envs = list(report["envs"].items())
    row, left, width = 26, 190, 420
    height = row * len(envs) + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="success-chart" width="{left + width + 80}" height="{height}" role="img" aria-label="success by env">']
    for pct in (0, 25, 50, 75, 100):
        x = left + width * pct / 100
        parts.append(f'<line x1="{x}" y1="10" x2="{x}" y2="{height - 25}" stroke="#ddd"/>'
                     f'<text x="{x}" y="{height - 10}" font-size="11" text-anchor="middle">{pct}%</text>')
    for i, (env_id, s) in enumerate(envs):
        y = 12 + i * row
        w = width * s["success_rate"]
        lo, hi = (left + width * v for v in s["ci95"])
        parts.append(
            f'<text x="{left - 6}" y="{y + 14}" font-size="12" text-anchor="end">{html.escape(_short(env_id))}</text>'
            f'<rect class="bar" x="{left}" y="{y + 3}" width="{w:.1f}" height="16" fill="#4e79a7"><title>{_pct(s["success_rate"])}%</title></rect>'
            f'<line x1="{lo:.1f}" y1="{y + 11}" x2="{hi:.1f}" y2="{y + 11}" stroke="#222" stroke-width="1.5"/>'
            f'<line x1="{lo:.1f}" y1="{y + 6}" x2="{lo:.1f}" y2="{y + 16}" stroke="#222"/>'
            f'<line x1="{hi:.1f}" y1="{y + 6}" x2="{hi:.1f}" y2="{y + 16}" stroke="#222"/>'
            f'<text x="{left + width + 8}" y="{y + 14}" font-size="11">{_pct(s["success_rate"])}%</text>')
    parts.append("</svg>")
    return "".join(parts)


def _failure_chart(report: dict[str, Any]) -> str:
    envs = list(report["envs"].items())
    kinds = [k for k in FAILURE_KINDS if any(k in s["failures"] for _, s in envs)]
    kinds += sorted({k for _, s in envs for k in s["failures"]} - set(kinds))
    row, left, width = 26, 190, 420
    height = row * len(envs) + 40 + 18 * ((len(kinds) + 3) // 4)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="failure-chart" width="{left + width + 80}" height="{height}" role="img" aria-label="failure taxonomy">']
    for i, (env_id, s) in enumerate(envs):
        y = 10 + i * row
        n = max(1, s["episodes"])
        x = float(left)
        parts.append(f'<text x="{left - 6}" y="{y + 14}" font-size="12" text-anchor="end">{html.escape(_short(env_id))}</text>')
        for j, kind in enumerate(kinds):
            count = s["failures"].get(kind, 0)
            if not count:
                continue
            w = width * count / n
            parts.append(f'<rect class="seg" x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="16" '
                         f'fill="{_COLORS[j % len(_COLORS)]}"><title>{kind}: {count}</title></rect>')
            x += w
    y0 = 20 + row * len(envs)
    for j, kind in enumerate(kinds):
        x, y = left + (j % 4) * 120 - 150, y0 + 18 * (j // 4)
        parts.append(f'<rect x="{x}" y="{y}" width="10" height="10" fill="{_COLORS[j % len(_COLORS)]}"/>'
                     f'<text x="{x + 14}" y="{y + 9}" font-size="11">{kind}</text>')
    parts.append("</svg>")
    return "".join(parts)


def to_html(report: dict[str, Any]) -> str:
    """One page, no scripts, no network: tables and inline SVG charts."""
    md_rows = []
    for env_id, s in report["envs"].items():
        k = str(s["samples"])
        md_rows.append(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
                _short(env_id), s["episodes"], _pct(s["success_rate"]),
                f"{_pct(s['ci95'][0])}–{_pct(s['ci95'][1])}", _pct(s["pass_at_k"].get(k)),
                _pct(s["pass_hat_k"].get(k)), f"{s['mean_turns']:.2f}", _pct(s["tool_call_validity"]),
                f"{s['mean_model_tokens']:.0f}", f"{s['mean_time_s']:.2f}",
                ", ".join(f"{a} {b}" for a, b in s["failures"].items()) or "—")) + "</tr>")
    bfcl = report.get("bfcl")
    bfcl_html = ""
    if bfcl:
        bfcl_html = (f"<p><b>BFCL v4 overall (partial): {_pct(bfcl['overall'])}%</b> — "
                     + ", ".join(f"{g} {_pct(v)}%" for g, v in bfcl["groups"].items())
                     + f". {html.escape(bfcl['note'])}.</p>")
    meta = report["meta"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>agentrl eval: {html.escape(str(meta.get('policy', '')))}</title>
<style>body{{font-family:sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right}}td:first-child{{text-align:left}}
h2{{margin-top:28px}}code{{background:#f4f4f4;padding:2px 4px}}</style></head><body>
<h1>agentrl eval</h1>
<p>Policy <code>{html.escape(str(meta.get('policy', '')))}</code>; command <code>{html.escape(str(meta.get('command', '')))}</code>;
{html.escape(str(meta.get('date', '')))}</p>
{bfcl_html}
<h2>Success by env (95% Wilson interval)</h2>
{_bar_chart(report)}
<h2>Failure taxonomy (share of episodes)</h2>
{_failure_chart(report)}
<h2>Figures</h2>
<table><tr><th>env</th><th>episodes</th><th>success %</th><th>95% CI</th><th>pass@k</th><th>pass^k</th>
<th>turns</th><th>call validity %</th><th>tokens/ep</th><th>s/ep</th><th>failures</th></tr>
{''.join(md_rows)}</table>
</body></html>
"""


def write_reports(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``report.html`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
    paths["json"].write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["md"].write_text(to_markdown(report), encoding="utf-8")
    paths["html"].write_text(to_html(report), encoding="utf-8")
    return paths
