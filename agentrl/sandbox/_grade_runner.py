# ruff: noqa: F821  -- recv/send/encode/decode come from _wire.py, prepended by the host
"""Runs the UNTRUSTED solution inside its own sandbox and answers calls (shipped as source).

Needs ``recv``/``send``/``encode``/``decode`` from ``_wire.py`` (prepended by the host).
Nothing this process prints or sends can grant reward: it only returns values, which the
trusted checker compares in a different sandbox.
"""

import os as _os
import sys as _sys
import traceback as _traceback


def _serve():
    ctl_in, ctl_out = _os.dup(0), _os.dup(1)
    null = _os.open(_os.devnull, _os.O_RDWR)
    for target in (0, 1, 2):
        _os.dup2(null, target)
    init = recv(ctl_in)
    # Loaded as a module, not a script: an `if __name__ == "__main__":` block does not run.
    namespace = {"__name__": "solution"}
    try:
        exec(compile(init["program"], "solution.py", "exec"), namespace)
        function = namespace[init["entry_point"]]
    except BaseException as exc:  # the agent's program may raise anything, SystemExit too
        send(ctl_out, {"load_error": "".join(_traceback.format_exception_only(exc))[-2000:]})
        return
    send(ctl_out, {"loaded": True})
    while True:
        call = recv(ctl_in)
        if call is None:
            return
        try:
            value = function(*decode(call["args"]), **decode(call["kwargs"]))
            reply = {"value": encode(value)}
        except BaseException as exc:  # an exception is the candidate's answer, not ours
            reply = {"error": "".join(_traceback.format_exception_only(exc))[-2000:]}
        send(ctl_out, reply)


_serve()
_sys.exit(0)
