"""The agentrl command line: envs, check, play, and exit codes."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from agentrl.cli import main
from agentrl.play import play


def test_envs_lists_builtin_ids_with_descriptions(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["ID", "DESCRIPTION"]
    line = next(ln for ln in out.splitlines() if ln.startswith("agentrl/Calculator-v0"))
    assert "calculator" in line.lower()


def test_check_passes_and_reports(capsys):
    assert main(["check", "agentrl/GuessNumber-v0", "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "Verdict: OK" in out and "[FAIL]" not in out
    for item in ("gymnasium env checker", "seeded reset is deterministic", "oracle episodes (2)",
                 "info keys of the env contract", "bad actions", "API misuse", "red-team probes"):
        assert f"[PASS] {item}" in out, item


def test_check_unknown_id_exits_2_with_suggestion(capsys):
    assert main(["check", "agentrl/GuesNumber-v0"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean: agentrl/GuessNumber-v0" in err


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_play_with_typed_turns():
    out = io.StringIO()
    # blank line sends a turn; /oracle asks the oracle; the episode ends when solved.
    inp = io.StringIO("<tool_call>{\"name\": \"calculator\",\n\"arguments\": {\"expression\": \"2+2\"}}</tool_call>\n\n/oracle\n/oracle\n")
    rc = play("agentrl/Calculator-v0", seed=4, inp=inp, out=out)
    text = out.getvalue()
    assert rc == 0
    assert "--- tool (calculator) ---\n4\n" in text  # the two typed lines formed one turn
    assert "Episode terminated; success: True" in text


def test_play_quit_and_eof():
    assert play("agentrl/GuessNumber-v0", seed=1, inp=io.StringIO("/quit\n"), out=io.StringIO()) == 1
    assert play("agentrl/GuessNumber-v0", seed=1, inp=io.StringIO(""), out=io.StringIO()) == 1


def test_console_script_runs():
    # The console script installed beside this interpreter (the venv's bin/, not PATH).
    script = Path(sys.executable).with_name("agentrl")
    out = subprocess.run([str(script), "envs"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "agentrl/GuessNumber-v0" in out.stdout
