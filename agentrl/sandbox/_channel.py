"""Length-prefixed JSON messages over a sandboxed process's stdin/stdout, with deadlines."""

from __future__ import annotations

import json
import os
import select
import struct
import subprocess
import time

__all__ = ["Channel", "TIMEOUT", "MAX_MESSAGE"]

#: Returned by :meth:`Channel.read` when the deadline passed.
TIMEOUT = "timeout"
#: Largest message accepted from a sandbox (bytes); larger ones count as garbage.
MAX_MESSAGE = 16 * 1024 * 1024


class Channel:
    """Frames: 4-byte big-endian length, then UTF-8 JSON."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.stdin is None or proc.stdout is None:
            raise ValueError("the process needs stdin and stdout pipes")
        self.proc = proc
        self._in = proc.stdin
        self._out = proc.stdout.fileno()
        self._buf = b""

    def write(self, message: object) -> bool:
        """Send one message; False when the process no longer reads (it died)."""
        body = json.dumps(message).encode("utf-8")
        try:
            self._in.write(struct.pack(">I", len(body)) + body)
            self._in.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError):
            return False
        return True

    def read(self, deadline: float) -> object:
        """The next message; None on EOF or garbage; :data:`TIMEOUT` at ``deadline``."""


        while True:
            if len(self._buf) >= 4:
                size = struct.unpack(">I", self._buf[:4])[0]
                if size > MAX_MESSAGE:
                    return None
                if len(self._buf) >= 4 + size:
                    body, self._buf = self._buf[4:4 + size], self._buf[4 + size:]
                    try:
                        return json.loads(body)
                    except ValueError:
                        return None
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._out], [], [], remaining)[0]:
                return TIMEOUT
            chunk = os.read(self._out, 1 << 20)
            if not chunk:
                return None
            self._buf += chunk
