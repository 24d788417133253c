"""Named lists of env ids (``agentrl eval --envs bfcl``); other modules add theirs."""

from __future__ import annotations

from collections.abc import Sequence

from agentrl.errors import ConfigError

__all__ = ["SUITES", "register_suite", "resolve_envs"]

_BFCL_SINGLE = [f"agentrl/BFCL-{c}-v0" for c in (
    "simple_python", "simple_java", "simple_javascript", "multiple", "parallel",
    "parallel_multiple", "irrelevance", "live_simple", "live_multiple", "live_parallel",
    "live_parallel_multiple", "live_irrelevance", "live_relevance")]
_BFCL_MULTI = [f"agentrl/BFCL-{c}-v0" for c in (
    "multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context")]

#: Suite name -> env ids.
SUITES: dict[str, list[str]] = {
    "bfcl": _BFCL_SINGLE + _BFCL_MULTI,
    "bfcl-single": list(_BFCL_SINGLE),
    "bfcl-multi": list(_BFCL_MULTI),
    "code": ["agentrl/HumanEval-v0"],
    "tools": ["agentrl/Calculator-v0", "agentrl/SQL-v0", "agentrl/Search-v0"],
    "dialogue": ["agentrl/Support-v0", "agentrl/Tau2-airline-v0", "agentrl/Tau2-retail-v0"],
    # every offline tool and dialogue env (no sandbox, no network, no judge)
    "agentic": ["agentrl/Calculator-v0", "agentrl/GuessNumber-v0", "agentrl/SQL-v0", "agentrl/Search-v0",
                "agentrl/Support-v0", "agentrl/Tau2-airline-v0", "agentrl/Tau2-retail-v0",
                *_BFCL_MULTI],
}


def register_suite(name: str, env_ids: Sequence[str]) -> None:
    """Make ``--envs NAME`` mean ``env_ids`` (re-registering a name replaces it)."""
    if not isinstance(name, str) or not name or "/" in name or "," in name:
        raise ConfigError(f"a suite name is a plain word (no '/' or ','), got {name!r}")
    ids = list(env_ids)
    if not ids or not all(isinstance(i, str) and i for i in ids):
        raise ConfigError(f"suite {name!r} needs a non-empty list of env ids")
    SUITES[name] = ids


def resolve_envs(spec: str) -> list[str]:
    """``"ID,ID,SUITE"`` -> env ids (suites expanded, duplicates dropped, order kept)."""
    out: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        ids = SUITES.get(part, [part] if "/" in part else None)
        if ids is None:
            raise ConfigError(f"{part!r} is neither an env id (ns/Name-vN) nor a suite; "
                              f"suites: {', '.join(sorted(SUITES))}")
        out.extend(i for i in ids if i not in out)
    if not out:
        raise ConfigError("--envs is empty: give env ids or a suite name")
    return out
