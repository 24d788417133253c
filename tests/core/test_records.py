"""fast_init keeps the dataclass behaviour of the per-step records."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from agentrl._records import fast_init
from agentrl.env import CallRecord, Task
from agentrl.parsers import ParseResult, ToolCall
from agentrl.tool import ToolResult


def test_records_behave_as_frozen_dataclasses():
    a, b = ToolCall("f"), ToolCall("f")
    assert a == b and a.arguments == {} and a.arguments is not b.arguments  # fresh default
    assert ToolCall("f", {"x": 1}, "id1") == ToolCall(name="f", arguments={"x": 1}, id="id1")
    assert repr(ToolResult("t", "ok", True)) == "ToolResult(name='t', content='ok', ok=True, error_kind=None)"
    assert hash(ParseResult((ToolCall("f", ()),), (), "c")) == hash(ParseResult((ToolCall("f", ()),), (), "c"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        Task("p", 1).answer = 2  # type: ignore[misc]
    record = CallRecord(1, "f", {}, True, "x", None)
    assert dataclasses.replace(record, ok=False).ok is False
    assert dataclasses.asdict(Task("p", 1))["metadata"] == {}
    assert str(inspect.signature(ToolCall)) == "(name, arguments=<factory>, id='')"
    with pytest.raises(TypeError):
        ToolCall()  # type: ignore[call-arg]


def test_unsupported_classes_are_refused():
    @dataclasses.dataclass(frozen=True)
    class Checked:
        x: int

        def __post_init__(self) -> None:
            pass

    with pytest.raises(TypeError, match="__post_init__"):
        fast_init(Checked)
