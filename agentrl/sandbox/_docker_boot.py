"""Runs INSIDE a Docker container: write files, run the program with caps, report JSON.

Shipped as source (``python3 -I -c``). The request comes in the environment variable
AGENTRL_REQUEST (JSON: argv, files as base64, stdin as base64, wall_time, output); the
result is one JSON line on this process's stdout. The program's own output goes to
pipes that this loop caps, so a program printing a gigabyte is stopped at the cap.
"""

import base64
import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import time


def main():
    request = json.loads(os.environ.pop("AGENTRL_REQUEST"))
    for name, body in request["files"].items():
        folder = os.path.dirname(name)
        if folder:
            os.makedirs(folder, exist_ok=True)
        with open(name, "wb") as handle:
            handle.write(base64.b64decode(body))
    cap, deadline = request["output"], time.monotonic() + request["wall_time"]
    start = time.monotonic()
    proc = subprocess.Popen(request["argv"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        proc.stdin.write(base64.b64decode(request["stdin"]))
        proc.stdin.close()
    except BrokenPipeError:
        pass
    sel = selectors.DefaultSelector()
    out = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    totals = dict.fromkeys(out, 0)
    for fd in out:
        sel.register(fd, selectors.EVENT_READ)
    timed_out = exceeded = False
    open_streams = 2
    while open_streams and not exceeded:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for key, _ in sel.select(remaining):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                sel.unregister(key.fd)
                open_streams -= 1
                continue
            totals[key.fd] += len(chunk)
            out[key.fd] += chunk[: max(0, cap - len(out[key.fd]))]
            exceeded = exceeded or totals[key.fd] > cap
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    code = proc.wait()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    stdout, stderr = out[proc.stdout.fileno()], out[proc.stderr.fileno()]
    report = {
        "stdout": base64.b64encode(bytes(stdout)).decode(),
        "stderr": base64.b64encode(bytes(stderr)).decode(),
        "stdout_total": totals[proc.stdout.fileno()],
        "stderr_total": totals[proc.stderr.fileno()],
        "returncode": None if timed_out or exceeded else code,
        "timed_out": timed_out,
        "output_exceeded": exceeded,
        "wall_time": time.monotonic() - start,
        "cpu_time": usage.ru_utime + usage.ru_stime,
    }
    sys.stdout.write("\nAGENTRL-RESULT " + json.dumps(report) + "\n")
    sys.stdout.flush()


main()
