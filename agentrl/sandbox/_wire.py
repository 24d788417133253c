"""Framing and plain-data encoding shared by the grading processes (shipped as source).

Values cross between sandboxes as tagged JSON that can only describe plain built-in data
(exact types: no subclasses, no objects with custom ``__eq__``). Whatever the untrusted
side sends, the decoder on the trusted side builds fresh built-in values from it.
"""

import json
import os
import struct

MAX_MESSAGE = 16 * 1024 * 1024


def read_exact(fd, n):
    parts = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def recv(fd):
    head = read_exact(fd, 4)
    if head is None:
        return None
    size = struct.unpack(">I", head)[0]
    if size > MAX_MESSAGE:
        return None
    body = read_exact(fd, size)
    if body is None:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError, MemoryError):
        return None


def send(fd, message):
    body = json.dumps(message).encode("utf-8")
    data = struct.pack(">I", len(body)) + body
    while data:
        data = data[os.write(fd, data):]


def encode(value):
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return value if -(2 ** 53) < value < 2 ** 53 else {"i": hex(value)}
    if kind is float:
        return {"f": repr(value)}
    if kind is complex:
        return {"c": [repr(value.real), repr(value.imag)]}
    if kind is bytes:
        return {"b": value.hex()}
    if kind is list:
        return {"l": [encode(item) for item in value]}
    if kind is tuple:
        return {"t": [encode(item) for item in value]}
    if kind is set:
        return {"s": [encode(item) for item in value]}
    if kind is frozenset:
        return {"z": [encode(item) for item in value]}
    if kind is dict:
        return {"d": [[encode(key), encode(item)] for key, item in value.items()]}
    raise TypeError(f"cannot pass a value of type {kind.__name__} between sandboxes")


def decode(data):
    kind = type(data)
    if data is None or kind is bool or kind is str or kind is int:
        return data
    if kind is not dict or len(data) != 1:
        raise ValueError("malformed value")
    (tag, body), = data.items()
    if tag == "i":
        return int(body, 16)
    if tag == "f":
        return float(body)
    if tag == "c":
        return complex(float(body[0]), float(body[1]))
    if tag == "b":
        return bytes.fromhex(body)
    if tag == "d":
        return {decode(key): decode(item) for key, item in body}
    items = [decode(item) for item in body]
    maker = {"l": list, "t": tuple, "s": set, "z": frozenset}.get(tag)
    if maker is None:
        raise ValueError("malformed value")
    return maker(items)
