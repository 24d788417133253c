"""Length-prefixed JSON messages over a sandboxed process's stdin/stdout, with deadlines.

Everything read here was written by a process that untrusted code can control, so the
readers never raise on what they receive: any byte sequence (bad length headers, huge,
truncated or deeply nested frames, invalid UTF-8, non-JSON) becomes :data:`GARBAGE`
(``None``), end of file, or :data:`TIMEOUT`. Callers map those to a program status.
"""

from __future__ import annotations

import json
import os
import select
import struct
import subprocess
import time
from typing import BinaryIO

__all__ = ["Channel", "FrameDecoder", "TIMEOUT", "GARBAGE", "MAX_MESSAGE", "parse_body",
           "encode_frame"]

#: Returned by :meth:`Channel.read` when the deadline passed.
TIMEOUT = "timeout"
#: Returned for EOF or a frame that is not a valid message (the stream is then dead).
GARBAGE = None
#: Largest message accepted from a sandbox (bytes); larger ones count as garbage.
MAX_MESSAGE = 16 * 1024 * 1024
# Errors json.loads can raise on hostile input: invalid JSON or UTF-8 (ValueError, incl.
# UnicodeDecodeError), deep nesting (RecursionError), huge numbers/strings (MemoryError,
# ValueError for int digit limits), and OverflowError for absurd floats on some builds.
_PARSE_ERRORS = (ValueError, RecursionError, MemoryError, OverflowError, TypeError)


def parse_body(body: bytes) -> dict | None:
    """Decode one frame body; ``GARBAGE`` (None) unless it is a UTF-8 JSON object (every
    message of the protocols is one)."""
    try:
        message = json.loads(body)
    except _PARSE_ERRORS:
        return GARBAGE
    return message if isinstance(message, dict) else GARBAGE


def encode_frame(message: object) -> bytes | None:
    """One frame for ``message``; None when it cannot be encoded (too deep, not JSON data,
    or larger than :data:`MAX_MESSAGE`)."""
    try:
        body = json.dumps(message).encode("utf-8")
    except (*_PARSE_ERRORS, UnicodeEncodeError):
        return None
    if len(body) > MAX_MESSAGE:
        return None
    return struct.pack(">I", len(body)) + body


class FrameDecoder:
    """Incremental frame parser: :meth:`feed` bytes, then :meth:`next` messages.

    After a bad frame (length over :data:`MAX_MESSAGE`, body that does not parse) the
    decoder is *poisoned*: the stream has lost its framing, so every later :meth:`next`
    returns ``GARBAGE`` too.
    """

    #: Returned by :meth:`next` when more bytes are needed.
    MORE = object()

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._buf = bytearray()
        self.poisoned = False

    def feed(self, chunk: bytes) -> None:
        if not self.poisoned:
            self._buf += chunk

    def next(self) -> object:
        """The next complete message, ``GARBAGE`` (None), or :attr:`MORE`."""
        if self.poisoned:
            return GARBAGE
        if len(self._buf) < 4:
            return self.MORE
        size = struct.unpack(">I", self._buf[:4])[0]
        if size > self.max_message:
            return self._poison()
        if len(self._buf) < 4 + size:
            return self.MORE
        body = bytes(self._buf[4:4 + size])
        del self._buf[:4 + size]
        message = parse_body(body)
        return self._poison() if message is GARBAGE else message

    def _poison(self) -> None:
        self.poisoned = True
        self._buf = bytearray()
        return GARBAGE


class Channel:
    """Frames: 4-byte big-endian length, then a UTF-8 JSON object (see :class:`FrameDecoder`)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.stdin is None or proc.stdout is None:
            raise ValueError("the process needs stdin and stdout pipes")
        self.proc = proc
        self._in: BinaryIO = proc.stdin  # type: ignore[assignment]
        self._out = proc.stdout.fileno()
        self._decoder = FrameDecoder()

    @classmethod
    def over(cls, write: BinaryIO, read_fd: int) -> Channel:
        """A channel on a writable file and a readable fd (no process; used in tests)."""
        channel = cls.__new__(cls)
        channel.proc = None  # type: ignore[assignment]
        channel._in, channel._out, channel._decoder = write, read_fd, FrameDecoder()
        return channel

    def write(self, message: object) -> bool:
        """Send one message; False when it cannot be encoded or the process no longer
        reads (it died)."""
        frame = encode_frame(message)
        if frame is None:
            return False
        try:
            self._in.write(frame)
            self._in.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError, OSError):
            return False
        return True

    def read(self, deadline: float) -> object:
        """The next message; None on EOF or garbage; :data:`TIMEOUT` at ``deadline``."""
        while True:
            message = self._decoder.next()
            if message is not FrameDecoder.MORE:
                return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return TIMEOUT
            try:
                if not select.select([self._out], [], [], remaining)[0]:
                    return TIMEOUT
                chunk = os.read(self._out, 1 << 20)
            except OSError:
                return GARBAGE
            if not chunk:
                return GARBAGE
            self._decoder.feed(chunk)
