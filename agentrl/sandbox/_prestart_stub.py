"""Runs first inside a prestarted bwrap sandbox (``python -I -S -c <this> <fd>``).

It waits on a socket for one request, writes the request's files into the work
directory, sets the request's rlimits (hard limits, so the program cannot raise them),
reports its own CPU time (the harness subtracts it), closes the socket and exec's the
program. Nothing untrusted runs before the limits are set; the sandbox is never reused.
Stdlib only; never imported by the harness.
"""

import base64
import json
import math
import os
import resource
import socket
import sys

_WORKDIR = "/work"


def main():
    sock = socket.socket(fileno=int(sys.argv[1]))
    sock.set_inheritable(False)  # the program must not talk to the harness
    sock.sendall(b"R")  # ready: start-up is over, so it stays out of any timing
    chunks = []
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    if not chunks:
        return 0  # the harness closed the pool
    request = json.loads(b"".join(chunks))
    for name, body in request["files"].items():
        path = os.path.join(_WORKDIR, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(body))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    for res, soft, hard in request["rlimits"]:
        if res == resource.RLIMIT_CPU:
            # RLIMIT_CPU counts this process's time so far too; rounding down keeps the
            # program's budget at most what was asked (it loses the stub's fraction).
            soft, hard = soft + math.floor(used), hard + math.floor(used)
        resource.setrlimit(res, (soft, hard))
    sock.sendall(json.dumps({"cpu": used}).encode())
    sock.close()
    argv = request["argv"]
    try:
        os.execvpe(argv[0], argv, request["env"])
    except OSError as err:
        os.write(2, f"bwrap: execvp {argv[0]}: {err.strerror}\n".encode())
        return 127


if __name__ == "__main__":  # run as ``python -c <source>``; importing does nothing
    sys.exit(main())
