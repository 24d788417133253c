"""BFCL's multi-turn backends (file system, trading, travel, ...), used by import from the wheel.

The backend classes are plain Python in the cached ``bfcl-eval`` wheel
(``bfcl_eval/eval_checker/multi_turn_eval/func_source_code/``). They import each other
through the ``bfcl_eval`` package name, so the wheel's folder is put on ``sys.path``
(once, here only: the package's heavy dependencies are never imported; only these
modules are). The eight backends of the multi-turn categories import with our packages
(``math_api`` needs ``mpmath``, which torch's ``sympy`` brings); ``web_search`` needs
``html2text`` and the memory backends need ``overrides``/``rank_bm25``/
``sentence-transformers``, so those agentic categories are not offered.

:class:`Backends` holds one instance per involved class, loaded with the entry's initial
configuration, and runs calls on them by method name, turning every result into the text
BFCL compares (``str`` as is, ``dict`` as JSON, else ``str()``; errors as
``"Error during execution: ..."``).
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib
import inspect
import json
import sys
from collections.abc import Mapping
from typing import Any

from agentrl.envs.bfcl.data import wheel_root
from agentrl.errors import DataUnavailableError

__all__ = ["Backends", "backend_class", "parse_call_text", "states_differ", "MODULES", "STATELESS"]

_PREFIX = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code."
#: Backend class -> module name inside the wheel.
MODULES = {
    "GorillaFileSystem": "gorilla_file_system", "MathAPI": "math_api",
    "MessageAPI": "message_api", "TwitterAPI": "posting_api", "TicketAPI": "ticket_api",
    "TradingBot": "trading_bot", "TravelAPI": "travel_booking",
    "VehicleControlAPI": "vehicle_control",
}
#: Classes without a scenario to load.
STATELESS = frozenset({"MathAPI"})
#: Method names BFCL refuses to run.
_REFUSED = frozenset({"kill", "exit", "quit", "remove", "unlink", "popen", "Popen", "run"})


@functools.cache
def backend_class(name: str) -> type:
    """The backend class ``name``, imported from the cached wheel."""
    if name not in MODULES:
        raise DataUnavailableError(f"no BFCL backend {name!r}; known: {', '.join(MODULES)}")
    root = str(wheel_root())
    if root not in sys.path:
        sys.path.append(root)  # the backends import each other as bfcl_eval.*
    try:
        module = importlib.import_module(_PREFIX + MODULES[name])
    except ImportError as exc:
        raise DataUnavailableError(
            f"the BFCL backend {name} cannot be imported without bfcl-eval's own "
            f"dependencies ({exc})"
        ) from exc
    return getattr(module, name)


def _result_text(value: Any) -> str:
    if type(value) is str:
        return value
    if type(value) is dict:
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def parse_call_text(text: str) -> tuple[str, list[Any], dict[str, Any]]:
    """``"f(1, a='x')"`` -> ``("f", [1], {"a": "x"})`` (literals only, never evaluated)."""
    node = ast.parse(text.strip(), mode="eval").body
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"not a plain call: {text!r}")
    args = [ast.literal_eval(a) for a in node.args]
    kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
    return node.func.id, args, kwargs


class Backends:
    """The instances of one episode side (the model's, or the ground truth's)."""

    def __init__(self, classes: list[str], initial_config: Mapping[str, Any],
                 long_context: bool = False) -> None:
        self.instances: dict[str, Any] = {}
        self.methods: dict[str, Any] = {}
        for name in classes:
            instance = backend_class(name)()
            if name not in STATELESS:
                instance._load_scenario(copy.deepcopy(initial_config.get(name, {})),
                                        long_context=long_context)
            self.instances[name] = instance
            for method_name, method in inspect.getmembers(instance, predicate=inspect.ismethod):
                if not method_name.startswith("_"):
                    self.methods[method_name] = method

    def run(self, name: str, args: list[Any] | tuple[Any, ...] = (),
            kwargs: Mapping[str, Any] | None = None) -> tuple[str, bool]:
        """Call method ``name``; (result text, ok)."""
        if name in _REFUSED:
            return f"Error during execution: Function call {name} is not allowed.", False
        method = self.methods.get(name)
        if method is None:
            return f"Error during execution: name '{name}' is not defined", False
        try:
            return _result_text(method(*args, **dict(kwargs or {}))), True
        except Exception as exc:  # backend code is third-party: any failure is the call's result
            return f"Error during execution: {exc}", False

    def keyword_args(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Positional ``args`` of method ``name`` given their parameter names (the oracle)."""
        if not args:
            return dict(kwargs)
        params = list(inspect.signature(self.methods[name]).parameters)
        return {**dict(zip(params, args, strict=False)), **kwargs}

    def state(self) -> dict[str, dict[str, Any]]:
        """Public attributes of each instance (what BFCL's state check compares)."""
        return {cls: {k: v for k, v in vars(inst).items() if not k.startswith("_")}
                for cls, inst in self.instances.items()}


def states_differ(model: Backends, truth: Backends) -> dict[str, list[str]]:
    """Per class, the public attributes of the ground truth whose values differ."""
    out: dict[str, list[str]] = {}
    for cls, inst in truth.instances.items():
        other = model.instances[cls]
        diff = [k for k in vars(inst) if not k.startswith("_")
                and getattr(other, k, object()) != getattr(inst, k)]
        if diff:
            out[cls] = diff
    return out

