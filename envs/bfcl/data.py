"""BFCL v4 data, read from the ``bfcl-eval`` wheel in the agentrl cache (never installed).

``agentrl data fetch bfcl`` puts the wheel's files in the cache; this module reads the
JSON Lines files ``bfcl_eval/data/BFCL_v4_<category>.json``, the possible answers
``possible_answer/BFCL_v4_<category>.json`` (aligned with the entries by line) and the
multi-turn function docs ``multi_turn_func_doc/*.json``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from agentrl.data.wheels import DATASETS, fetch_wheel
from agentrl.errors import ConfigError

__all__ = [
    "SINGLE_TURN",
    "MULTI_TURN",
    "CATEGORIES",
    "UNSUPPORTED",
    "data_root",
    "wheel_root",
    "load_entries",
    "load_answers",
    "language_of",
    "func_docs",
]

#: Single-turn categories, in BFCL's order.
SINGLE_TURN = (
    "simple_python", "simple_java", "simple_javascript", "multiple", "parallel",
    "parallel_multiple", "irrelevance", "live_simple", "live_multiple", "live_parallel",
    "live_parallel_multiple", "live_irrelevance", "live_relevance",
)
#: Multi-turn categories (stateful backends from the wheel).
MULTI_TURN = ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param",
              "multi_turn_long_context")
CATEGORIES = SINGLE_TURN + MULTI_TURN
#: Categories of BFCL v4 not run here, and why.
UNSUPPORTED = {
    "web_search": "needs live web search (the network); its backend also needs html2text",
    "memory": "agentic memory backends need packages outside our pins (e.g. overrides) and a "
              "prerequisite conversation phase",
    "format_sensitivity": "a re-run of other categories under prompt-format variations",
}

#: Class name -> function-doc file of the multi-turn backends.
FUNC_DOC_FILES = {
    "GorillaFileSystem": "gorilla_file_system.json", "MathAPI": "math_api.json",
    "MessageAPI": "message_api.json", "TwitterAPI": "posting_api.json",
    "TicketAPI": "ticket_api.json", "TradingBot": "trading_bot.json",
    "TravelAPI": "travel_booking.json", "VehicleControlAPI": "vehicle_control.json",
}


def wheel_root() -> Path:
    """The unzipped ``bfcl-eval`` wheel (fetched on first use; see ``agentrl data fetch bfcl``)."""
    data = DATASETS["bfcl"]
    return fetch_wheel(data.dist, data.version)


def data_root() -> Path:
    """``bfcl_eval/data`` inside the cached wheel."""
    return wheel_root() / "bfcl_eval" / "data"


def _read_jsonl(path: Path) -> tuple[dict[str, Any], ...]:
    with open(path, encoding="utf-8") as handle:
        return tuple(json.loads(line) for line in handle if line.strip())


def _check(category: str) -> None:
    if category not in CATEGORIES:
        why = UNSUPPORTED.get(category)
        raise ConfigError(
            f"unknown BFCL category {category!r}"
            + (f" (not supported: {why})" if why else "")
            + f"; known: {', '.join(CATEGORIES)}"
        )


@functools.cache
def load_entries(category: str) -> tuple[dict[str, Any], ...]:
    """The test entries of ``category`` (dicts with id, question, function, ...)."""
    _check(category)
    return _read_jsonl(data_root() / f"BFCL_v4_{category}.json")


@functools.cache
def load_answers(category: str) -> tuple[Any, ...]:
    """The ground truth of each entry (same order); empty for (ir)relevance categories."""
    _check(category)
    path = data_root() / "possible_answer" / f"BFCL_v4_{category}.json"
    if not path.is_file():
        return ()
    answers = _read_jsonl(path)
    entries = load_entries(category)
    if len(answers) != len(entries):
        raise ConfigError(f"BFCL data: {len(entries)} entries but {len(answers)} answers in {category}")
    return tuple(a["ground_truth"] for a in answers)


def language_of(category: str) -> str:
    """``java``, ``javascript`` or ``python``: how parameter values are written and checked."""
    if category == "simple_java":
        return "java"
    if category == "simple_javascript":
        return "javascript"
    return "python"


@functools.cache
def func_docs(class_name: str) -> tuple[dict[str, Any], ...]:
    """The function docs of one multi-turn backend class."""
    if class_name not in FUNC_DOC_FILES:
        raise ConfigError(f"no BFCL backend {class_name!r}; known: {', '.join(FUNC_DOC_FILES)}")
    return _read_jsonl(data_root() / "multi_turn_func_doc" / FUNC_DOC_FILES[class_name])
