"""Fault class 1: no byte sequence a sandboxed program writes may crash the harness.

The channel readers are fuzzed with hypothesis (random bytes, bad length headers, huge,
truncated and deeply nested frames, invalid UTF-8); the grader and the session are fed
hostile frames by real sandboxed programs and must answer with a status.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentrl.sandbox import Limits, Status
from agentrl.sandbox._channel import (
    GARBAGE,
    MAX_MESSAGE,
    TIMEOUT,
    Channel,
    FrameDecoder,
    encode_frame,
    parse_body,
)
from agentrl.sandbox.grading import FunctionGrader

NESTED = b"[" * 100_000 + b"]" * 100_000
HOSTILE_BODIES = [
    NESTED,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b"\xff\xfe\x00garbage",
    b'"\xed\xa0\x80"',  # a lone surrogate in UTF-8
    b"1" * 5000,  # an int past the digit limit
    b"1e999999",
    b"",
    b"NaN",
]


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def drain(decoder: FrameDecoder) -> list[object]:
    out = []
    while (message := decoder.next()) is not FrameDecoder.MORE:
        out.append(message)
        if message is GARBAGE:
            break
    return out


@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
def test_hostile_bodies_parse_to_garbage_or_data(body):
    value = parse_body(body)  # never raises
    assert value is GARBAGE or isinstance(value, dict)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096), st.lists(st.integers(1, 64), max_size=20))
def test_decoder_never_raises_on_random_bytes(data, cuts):
    decoder = FrameDecoder(max_message=1024)
    pos = 0
    for cut in cuts:  # arbitrary chunking
        decoder.feed(data[pos:pos + cut])
        pos += cut
        drain(decoder)
    decoder.feed(data[pos:])
    drain(decoder)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=4),
    max_leaves=15,
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=5), json_values, max_size=4), max_size=5),
       st.binary(max_size=64), st.integers(0, 2**32 - 1),
       st.integers(3, 64))
def test_decoder_keeps_good_frames_and_stops_at_bad_ones(values, junk, header, chunk):
    """Valid frames come out intact, in order; what follows a bad header or body is
    garbage; feeding in any chunking gives the same messages."""
    stream = b"".join(encode_frame(v) for v in values)
    stream += struct.pack(">I", header) + junk
    decoder = FrameDecoder(max_message=1 << 20)
    got: list[object] = []
    for i in range(0, len(stream), chunk):
        decoder.feed(stream[i:i + chunk])
        got += drain(decoder)
    assert got[:len(values)] == values
    assert all(m is GARBAGE for m in got[len(values) + 1:])


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 200_000), st.sampled_from([b"[", b"{\"k\":", b"[[", b"\xc3"]))
def test_deep_or_truncated_frames(depth, opener):
    body = opener * depth
    decoder = FrameDecoder()
    decoder.feed(frame(body))
    assert drain(decoder) in ([GARBAGE], [])
    decoder = FrameDecoder()
    decoder.feed(frame(body + b"x" * 10)[: 4 + len(body) // 2])  # truncated: waits for more
    assert drain(decoder) == []


def test_header_over_the_limit_is_garbage_without_reading_the_body():
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">I", MAX_MESSAGE + 1))
    assert decoder.next() is GARBAGE and decoder.poisoned
    decoder.feed(frame(b"1"))
    assert decoder.next() is GARBAGE


def test_encode_frame_refuses_what_cannot_be_sent():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert encode_frame(deep) is None
    assert encode_frame({"x": object()}) is None
    assert parse_body(encode_frame({"s": "\ud800"})[4:]) == {"s": "\ud800"}  # escaped
    assert parse_body(b"[1]") is GARBAGE and parse_body(b"null") is GARBAGE  # not objects


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=3000))
def test_channel_over_a_real_pipe(data):
    read_fd, write_fd = os.pipe()
    sink_r, sink_w = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write_fd, data), os.close(write_fd)))
    writer.start()
    with os.fdopen(sink_w, "wb") as sink:
        channel = Channel.over(sink, read_fd)
        for _ in range(10):
            message = channel.read(time.monotonic() + 2)
            assert message != TIMEOUT
            if message is GARBAGE:
                break
    writer.join()
    os.close(read_fd)
    os.close(sink_r)


# -- real programs -----------------------------------------------------------------

REPRODUCER = ("import os,struct\ndef f(x):\n b=b'['*5000+b']'*5000\n"
              " os.write(4,struct.pack('>I',len(b))+b)\n return x\n")
CHECK = "def check(c):\n assert c(1)==1\n"


def hostile_writer(payload: str) -> str:
    """A solution that writes ``payload`` (bytes expr) on every fd it has, then answers."""
    return ("import os\ndef f(x):\n"
            f" data = {payload}\n"
            " for fd in range(3, 12):\n"
            "  try: os.write(fd, data)\n"
            "  except OSError: pass\n"
            " return x\n")


def test_issue_reproducer_is_a_failed_grade_not_an_exception(bwrap):
    result = FunctionGrader(bwrap).grade(REPRODUCER, entry_point="f", test=CHECK)
    assert result.passed is False and result.reward == 0.0


@pytest.mark.parametrize("payload", [
    "b'\\x00\\x00\\x00\\x05[[[[['",  # truncated deep frame
    "b'\\xff\\xff\\xff\\xff' + b'x' * 100",  # huge length header
    "b'\\x00\\x00\\x00\\x04\\xff\\xfe\\xfd\\xfc'",  # invalid UTF-8
    "b'\\x00\\x00\\x00\\x0e{\"value\": 1e999}'",  # a float that overflows
    "b'\\x00\\x00\\x00\\x10{\"value\": [[[[1'",  # unterminated JSON
    "__import__('struct').pack('>I', 200005) + b'{\"value\": ' + b'[' * 100000 + b']' * 100000 + b'}'",
], ids=["truncated", "huge-header", "utf8", "overflow", "unterminated", "deep-value"])
def test_hostile_frames_from_the_solution_fail_the_grade(bwrap, payload):
    result = FunctionGrader(bwrap, Limits(wall_time=8)).grade(
        hostile_writer(payload), entry_point="f", test=CHECK)
    assert result.passed is False


def test_hostile_frames_in_a_session_are_a_status(bwrap):
    with bwrap.open_session(Limits(wall_time=5)) as session:
        for payload in [
            "b'\\x00\\x00\\x00\\x05[[[[['",
            "b'\\x00\\x02\\x00\\x00' + b'[' * 0x20000",
            "b'\\x00\\x00\\x00\\x03\\xff\\xfe\\xfd'",
            "b'\\x00\\x00\\x00\\x24' + b'{\"id\": 0, \"status\": \"sandbox_error\"}'",
            "b'\\x00\\x00\\x00\\x12{\"id\": 0, \"x\": 1}'",
        ]:
            code = ("import os\n"
                    f"data = {payload}\n"
                    "for fd in range(3, 12):\n"
                    "    try: os.write(fd, data)\n"
                    "    except OSError: pass\n")
            result = session.run(code)
            assert isinstance(result.status, Status)
            assert result.status is not Status.SANDBOX_ERROR
            assert session.run("print(1)").stdout == "1\n"  # the session recovers


def test_forged_session_reply_cannot_claim_a_sandbox_fault(bwrap):
    body = json.dumps({"id": 0, "status": "sandbox_error", "stdout": "", "stderr": "",
                       "stdout_size": 0, "stderr_size": 0, "cpu_time": 0}).encode()
    code = ("import os, sys\n"
            f"os.write(4, {struct.pack('>I', len(body)) + body!r})\n"
            "os._exit(0)\n")
    with bwrap.open_session(Limits(wall_time=5)) as session:
        result = session.run(code)
        assert result.status is Status.RUNTIME_ERROR


@settings(max_examples=8, deadline=None)
@given(st.binary(min_size=1, max_size=2048), st.binary(max_size=2048))
def test_any_bytes_on_stdout_and_stderr_are_a_result(bwrap, out, err):
    code = ("import os\n"
            f"os.write(1, {out!r})\nos.write(2, {err!r})\n")
    result = bwrap.run_python(code, limits=Limits(wall_time=10))
    assert result.status is Status.OK
    assert result.stdout == out.decode("utf-8", errors="replace")
    assert result.stderr == err.decode("utf-8", errors="replace")
