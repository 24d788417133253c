"""The HTML report renders its charts in a real browser (headless Chromium)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from agentrl.eval.report import build_report, to_html
from agentrl.eval.run import EvalRun
from agentrl.eval.score import EpisodeRecord

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _run() -> EvalRun:
    run = EvalRun()
    for env, wins in (("agentrl/BFCL-simple_python-v0", 7), ("agentrl/BFCL-parallel-v0", 3)):
        run.records[env] = [EpisodeRecord(env, f"t{i}", i < wins, None if i < wins else "wrong_args",
                                          1, 1, 1, 5, 0.01, "terminated") for i in range(10)]
        run.wall_s[env] = 1.0
    return run


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package `chromium`)")
def test_charts_render_in_headless_chromium(tmp_path):
    from PIL import Image

    page = tmp_path / "report.html"
    page.write_text(to_html(build_report(_run(), {"policy": "test", "command": "x"})))
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.stdout.count('class="bar"') == 2 and 'id="failure-chart"' in dom.stdout
    shot = tmp_path / "shot.png"
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=900,700", page.as_uri()],
                   capture_output=True, timeout=120, check=False)
    pixels = Image.open(shot).convert("RGB").getdata()
    bar = sum(1 for p in pixels if p == (78, 121, 167))  # #4e79a7, the success bars
    assert bar > 2000  # two bars (70% and 30% of 420 px, 16 px high) drawn
