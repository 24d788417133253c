"""Read-only SQL over a SQLite file: a query tool with a time limit and output caps.

:class:`ReadOnlyDatabase` opens the file read-only (``file:PATH?mode=ro`` URI), refuses
everything but reading through SQLite's authorizer (no ATTACH, no PRAGMA, no writes even
to temp tables), stops any statement after ``time_limit_s`` through the progress handler,
and returns at most ``max_rows`` rows. :meth:`ReadOnlyDatabase.tool` is the agent's
``query_sql`` tool: a text table, cut at ``max_chars``, or a clear error message.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agentrl.tool import Tool, ToolError

__all__ = ["ReadOnlyDatabase", "QueryResult", "format_table", "query_tool", "rows_key", "MAX_SQL_CHARS"]

#: Longest SQL text accepted.
MAX_SQL_CHARS = 10_000

_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
            getattr(sqlite3, "SQLITE_RECURSIVE", 33)}


def _authorize(action: int, *_: Any) -> int:
    return sqlite3.SQLITE_OK if action in _ALLOWED else sqlite3.SQLITE_DENY


def _sql_error(exc: Exception) -> str:
    if "not authorized" in str(exc):
        return "only reading queries (SELECT) are allowed on this database"
    return f"SQL error: {exc}"


class QueryResult:
    """Column names and rows of one query (rows capped; ``truncated`` says if more existed)."""

    def __init__(self, columns: list[str], rows: list[tuple[Any, ...]], truncated: bool) -> None:
        self.columns = columns
        self.rows = rows
        self.truncated = truncated


def format_table(result: QueryResult, max_chars: int) -> str:
    """``col | col`` header and one line per row, cut at ``max_chars`` with a note."""
    lines = [" | ".join(result.columns)]
    lines += [" | ".join("NULL" if v is None else str(v) for v in row) for row in result.rows]
    if not result.rows:
        lines.append("(no rows)")
    if result.truncated:
        lines.append(f"... (only the first {len(result.rows)} rows are shown)")
    text = "\n".join(lines)
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n... (output cut at {max_chars} characters)"
    return text


class ReadOnlyDatabase:
    """One SQLite file, opened read-only, queried with limits.

    Args:
        path: the database file (must exist).
        time_limit_s: a statement running longer is interrupted.
        max_rows: rows returned by :meth:`query` at most (the rest are counted as cut).
        max_chars: longest text the tool returns.
    """

    def __init__(self, path: str | Path, *, time_limit_s: float = 1.0, max_rows: int = 50,
                 max_chars: int = 4000) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no database file at {self.path}")
        self.time_limit_s = time_limit_s
        self.max_rows = max_rows
        self.max_chars = max_chars
        self._deadline = 0.0
        self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        self.conn.set_progress_handler(self._progress, 2000)
        self.conn.set_authorizer(_authorize)

    def _progress(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    def query(self, sql: str, *, max_rows: int | None = None) -> QueryResult:
        """Run one read-only statement; raises :class:`ToolError` with a clear message."""
        if len(sql) > MAX_SQL_CHARS:
            raise ToolError(f"query too long ({len(sql)} characters; limit {MAX_SQL_CHARS})")
        if not sql.strip():
            raise ToolError("empty query")
        limit = self.max_rows if max_rows is None else max_rows
        self._deadline = time.monotonic() + self.time_limit_s
        try:
            cursor = self.conn.execute(sql)
            rows = cursor.fetchmany(limit + 1)
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc):
                raise ToolError(f"query stopped after the time limit of {self.time_limit_s:g} s") from None
            raise ToolError(_sql_error(exc)) from None
        except (sqlite3.DatabaseError, sqlite3.Warning, sqlite3.ProgrammingError) as exc:
            raise ToolError(_sql_error(exc)) from None
        except (OverflowError, MemoryError, RecursionError) as exc:
            raise ToolError(f"query failed: {type(exc).__name__}") from None
        columns = [d[0] for d in cursor.description or ()]
        cursor.close()
        return QueryResult(columns, rows[:limit], len(rows) > limit)

    def schema(self) -> str:
        """The ``CREATE TABLE`` statements of the database."""
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT sql FROM sqlite_master WHERE type='table' ORDER BY name")
            return "\n".join(r[0] + ";" for r in rows if r[0])

    def tool(self) -> Tool:
        """The agent's ``query_sql`` tool on this database."""
        return query_tool(lambda: self)

    def close(self) -> None:
        self.conn.close()


def _norm(value: Any) -> Any:
    if isinstance(value, float):
        value = round(value, 4)
        return int(value) if value.is_integer() else value
    return value


def rows_key(rows: Sequence[Sequence[Any]], ordered: bool) -> list[tuple[Any, ...]]:
    """Rows normalized for comparison: floats rounded to 4 places; sorted unless ``ordered``."""
    norm = [tuple(_norm(v) for v in row) for row in rows]
    if ordered:
        return norm
    return sorted(norm, key=lambda r: tuple((type(v).__name__, str(v)) for v in r))


def query_tool(get_db: Callable[[], ReadOnlyDatabase]) -> Tool:
    """The ``query_sql`` tool on the database ``get_db()`` returns at call time (an env
    swaps the database per episode)."""

    def query_sql(sql: str) -> str:
        """Run one read-only SQL query (SQLite dialect) on the database and return the rows as a table.

        Args:
            sql: One SELECT statement, e.g. "SELECT name FROM customers WHERE city = 'Oslo'".
        """
        db = get_db()
        return format_table(db.query(sql), db.max_chars)

    return Tool(query_sql)
