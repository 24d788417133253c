"""Trajectories survive JSONL save/load exactly: unicode, awkward floats, nested info."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest

from agentrl.errors import TrajectoryFormatError
from agentrl.trajectory import Trajectory, Turn, load_jsonl, save_jsonl

# Floats whose shortest repr is long or that sit at the edges of float64.
AWKWARD = [0.1 + 0.2, -1e-300, 5e-324, -1.7976931348623157e308, -0.0, -2.0 / 3.0, -123456.789e-5]


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def handmade() -> Trajectory:
    n = 12
    mask = [0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1]
    logprobs = [0.0] * n
    model_positions = [i for i, m in enumerate(mask) if m]
    for pos, value in zip(model_positions, AWKWARD[:5], strict=True):
        logprobs[pos] = value
    return Trajectory(
        env_id="agentrl/Unicode-v0",
        token_ids=list(range(100, 100 + n)),
        loss_mask=mask,
        logprobs=logprobs,
        prompt_len=5,
        turns=[Turn(5, 8, reward=0.1 + 0.2, finish_reason="stop", info={"ratio": -2.0 / 3.0},
                    weight_version=3),
               Turn(10, 12, reward=-1e-300, finish_reason="length", info={"tools": ["π", None]},
                    weight_version=None)],
        seed=2**40,
        group_id="grp-✓",
        success=False,
        terminated=False,
        truncated=True,
        end_reason="max_new_tokens",
        messages=[{"role": "user", "content": "naïve café 東京 😀 \u2028 \"quoted\" \\ back\nslash"},
                  {"role": "assistant", "content": "\x00 nul and \t tab"}],
        metadata={"nested": {"list": [1, 2.5, "x"], "empty": {}}, "big": 10**20},
        task_id="HumanEval/7 ✓",
        options={"task_id": "HumanEval/7 ✓", "level": [1, {"x": -0.0}]},
        reset_info={"task_id": "HumanEval/7 ✓", "category": "strings", "n": 2**70},
    )


def test_old_records_without_the_new_fields_still_load() -> None:
    record = handmade().to_dict()
    for key in ("task_id", "options", "reset_info"):
        del record[key]
    for turn in record["turns"]:
        del turn["weight_version"]
    old = Trajectory.from_json(json.dumps(record))
    assert old.task_id is None and old.options == {} and old.reset_info == {}
    assert old.weight_versions == [None, None]
    assert old.valid and old.token_ids == handmade().token_ids


def test_valid_is_false_only_for_errors_and_bad_new_fields_are_refused() -> None:
    traj = handmade()
    assert traj.valid
    traj.end_reason = "error"
    assert not traj.valid
    record = handmade().to_dict()
    record["task_id"] = 7
    with pytest.raises(TrajectoryFormatError, match="task_id must be a str"):
        Trajectory.from_dict(record)
    record = handmade().to_dict()
    record["reset_info"] = [1]
    with pytest.raises(TrajectoryFormatError, match="options and reset_info must be dicts"):
        Trajectory.from_dict(record)


def test_roundtrip_is_exact(tmp_path: Path) -> None:
    original = [handmade(), handmade()]
    original[1].error = "ValueError: ☃"
    original[1].end_reason = "error"
    path = tmp_path / "t.jsonl"
    assert save_jsonl(original, path) == 2
    loaded = load_jsonl(path)
    assert loaded == original
    assert loaded[0].weight_versions == [3, None] and loaded[0].task_id == "HumanEval/7 ✓"
    for a, b in zip(original, loaded, strict=True):
        # Bit-exact floats (== would accept 0.0 for -0.0).
        assert [bits(x) for x in a.logprobs] == [bits(x) for x in b.logprobs]
        assert [bits(t.reward) for t in a.turns] == [bits(t.reward) for t in b.turns]
    assert math.copysign(1.0, handmade().logprobs[10]) == -1.0  # -0.0 kept its sign
    # Saving what was loaded gives the same bytes.
    again = tmp_path / "u.jsonl"
    save_jsonl(loaded, again)
    assert again.read_bytes() == path.read_bytes()
    # One record per line, unicode written as itself (readable with grep).
    text = path.read_text(encoding="utf-8")
    assert text.count("\n") == 2 and "東京" in text


def test_malformed_lines_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = handmade().to_json()
    path.write_text(good + "\n\n" + json.dumps({"env_id": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(TrajectoryFormatError, match=r"bad\.jsonl:3: bad trajectory record"):
        load_jsonl(path)
    path.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(TrajectoryFormatError, match=r":1: not valid JSON"):
        load_jsonl(path)
    bad = handmade().to_dict()
    bad["loss_mask"][0] = 1
    path.write_text(json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(TrajectoryFormatError, match="outside the turn spans"):
        load_jsonl(path)

