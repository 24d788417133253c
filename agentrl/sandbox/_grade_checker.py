# ruff: noqa: F821  -- recv/send/encode/decode come from _wire.py, prepended by the host
"""Runs the TRUSTED hidden tests in a sandbox of its own (shipped as source).

Needs ``recv``/``send``/``encode``/``decode`` from ``_wire.py`` (prepended by the host).
The candidate is a proxy: each call is sent to the solution's sandbox through the host,
and the answer comes back as plain data. Every ``assert`` in the test is followed by a
marker carrying the host's nonce; ``done`` is sent only if ``check`` returned.
"""

import ast as _ast
import os as _os


class CandidateError(Exception):
    """The solution raised, died or answered something that is not plain data."""


def _instrument(source, mark_name):
    tree = _ast.parse(source, "hidden_test.py", "exec")
    count = 0

    class Marker(_ast.NodeTransformer):
        def visit_Assert(self, node):
            nonlocal count
            mark = _ast.Expr(_ast.Call(_ast.Name(mark_name, _ast.Load()),
                                       [_ast.Constant(count)], []))
            count += 1
            return [node, mark]

    tree = _ast.fix_missing_locations(Marker().visit(tree))
    return compile(tree, "hidden_test.py", "exec"), count


def _main():
    ctl_in, ctl_out = _os.dup(0), _os.dup(1)
    null = _os.open(_os.devnull, _os.O_RDWR)
    for target in (0, 1, 2):
        _os.dup2(null, target)
    init = recv(ctl_in)
    nonce = init["nonce"]
    if not __debug__:
        send(ctl_out, {"fail": nonce, "error": "asserts are disabled (-O)"})
        return

    def mark(index):
        send(ctl_out, {"pass": nonce, "assert": index})

    def candidate(*args, **kwargs):
        send(ctl_out, {"call": {"args": encode(list(args)), "kwargs": encode(kwargs)}})
        reply = recv(ctl_in)
        if not isinstance(reply, dict):
            raise CandidateError("no answer from the solution")
        if "value" not in reply:
            raise CandidateError(str(reply.get("error", "no answer"))[-500:])
        try:
            return decode(reply["value"])
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            raise CandidateError("the solution's answer is not plain data") from exc

    namespace = {"__name__": "__main__", "_agentrl_mark": mark}
    try:
        exec(compile(init["context"], "prompt.py", "exec"), namespace)
        # As in the original harnesses, the function's own name refers to the candidate.
        if init.get("entry_point"):
            namespace[init["entry_point"]] = candidate
        code, total = _instrument(init["test"], "_agentrl_mark")
        send(ctl_out, {"asserts": nonce, "total": total})
        exec(code, namespace)
        namespace[init["check"]](candidate)
    except BaseException as exc:  # any failure of the test is a failed test
        line = ""
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == "hidden_test.py":
                line = f" (hidden test line {tb.tb_lineno})"
            tb = tb.tb_next
        send(ctl_out, {"fail": nonce, "error": f"{type(exc).__name__}: {exc}{line}"})
        return
    send(ctl_out, {"done": nonce})


_main()
