"""A copy-on-write view of a tau2 domain database (the shared base is never changed).

Domain databases are megabytes of JSON; an episode changes a handful of records. An
:class:`OverlayDB` reads through to the shared base and keeps private copies of the
records it changes, so a reset costs nothing and two final states compare by their
changed records only.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from agentrl.tool import ToolError

__all__ = ["OverlayDB"]


class OverlayDB:
    """Tables of records (``table -> key -> dict``) with the episode's changes on top."""

    def __init__(self, base: dict[str, dict[str, Any]]) -> None:
        self.base = base
        self.changes: dict[tuple[str, str], Any] = {}

    def get(self, table: str, key: str, what: str = "") -> Any:
        """The record (read only: use :meth:`edit` to change it); ToolError if absent."""
        found = self.changes.get((table, key))
        if found is None:
            found = self.base[table].get(key)
        if found is None:
            raise ToolError(f"{what or table} {key} not found")
        return found

    def has(self, table: str, key: str) -> bool:
        return (table, key) in self.changes or key in self.base[table]

    def edit(self, table: str, key: str, what: str = "") -> Any:
        """A private, changeable copy of the record (made on first edit)."""
        if (table, key) not in self.changes:
            self.changes[(table, key)] = copy.deepcopy(self.get(table, key, what))
        return self.changes[(table, key)]

    def add(self, table: str, key: str, record: Any) -> None:
        self.changes[(table, key)] = record

    def items(self, table: str) -> Iterator[tuple[str, Any]]:
        """Every (key, record) of ``table``, changes applied, in the base's order."""
        for key, record in self.base[table].items():
            yield key, self.changes.get((table, key), record)
        for (t, key), record in self.changes.items():
            if t == table and key not in self.base[table]:
                yield key, record

    def diff(self) -> str:
        """Canonical JSON of the records that differ from the base (equal states, equal text)."""
        out = {f"{t}/{k}": r for (t, k), r in self.changes.items() if self.base[t].get(k) != r}
        return json.dumps(out, sort_keys=True, separators=(",", ":"))
