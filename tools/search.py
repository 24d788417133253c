"""Full-text search over a local document collection: SQLite FTS5 with BM25 ranking.

:class:`DocumentIndex` holds documents (id, title, text) in an in-memory FTS5 table.
:meth:`DocumentIndex.search` ranks them by BM25 (title weighted above text) for a free-text
query: its words are quoted, so no query can be an FTS5 syntax error, and joined with OR.
:meth:`DocumentIndex.tools` gives the agent's ``search`` and ``read`` tools.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from agentrl.tool import Tool, ToolError

__all__ = ["Document", "DocumentIndex", "query_terms", "search_tools"]

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_TERMS = 32


@dataclass(frozen=True)
class Document:
    """One document of a collection."""

    id: str
    """Stable id the ``read`` tool takes, e.g. ``doc-12``."""
    title: str
    """Short title (searched with a higher weight than the text)."""
    text: str
    """The body."""


def query_terms(query: str) -> list[str]:
    """The words of ``query``, lowercased, in order, without repeats (at most 32)."""
    out: list[str] = []
    for w in _WORD.findall(query.lower()):
        if w not in out:
            out.append(w)
    return out[:MAX_QUERY_TERMS]


class DocumentIndex:
    """An in-memory FTS5 index of documents with BM25 search and read-by-id.

    Args:
        documents: the collection (ids must be unique).
        snippet_chars: length of the text excerpt shown per search hit.
        max_read_chars: longest text ``read`` returns.
    """

    def __init__(self, documents: Iterable[Document], *, snippet_chars: int = 160,
                 max_read_chars: int = 4000) -> None:
        self.docs = {d.id: d for d in documents}
        self.snippet_chars = snippet_chars
        self.max_read_chars = max_read_chars
        self._lock = threading.Lock()
        self.conn = sqlite3.connect(":memory:", check_same_thread=False)
        self.conn.execute("CREATE VIRTUAL TABLE docs USING fts5(id UNINDEXED, title, text, tokenize='unicode61')")
        self.conn.executemany("INSERT INTO docs VALUES (?, ?, ?)",
                              [(d.id, d.title, d.text) for d in self.docs.values()])

    def search(self, query: str, k: int = 5) -> list[tuple[Document, float]]:
        """The ``k`` best documents for ``query`` with their BM25 scores (lower is better)."""
        terms = query_terms(query)
        if not terms:
            return []
        match = " OR ".join('"' + t.replace('"', "") + '"' for t in terms)
        with self._lock:
            rows = self.conn.execute(
                "SELECT id, bm25(docs, 0.0, 3.0, 1.0) AS score FROM docs WHERE docs MATCH ? "
                "ORDER BY score, id LIMIT ?", (match, max(1, min(k, 20)))).fetchall()
        return [(self.docs[i], float(s)) for i, s in rows]

    def tools(self) -> list[Tool]:
        """``search(query, k)`` and ``read(doc_id)`` on this index."""
        return search_tools(lambda: self)

    def close(self) -> None:
        self.conn.close()


def search_tools(get_index: Callable[[], DocumentIndex]) -> list[Tool]:
    """The ``search`` and ``read`` tools on the index ``get_index()`` returns at call time
    (an env swaps the collection per episode)."""

    def search(query: str, k: int = 5) -> str:
        """Search the document collection; returns the best matches (id, title, excerpt), best first.

        Args:
            query: Keywords, e.g. "Varnok Industries founder".
            k: How many results to return (1-10).
        """
        if len(query) > 1000:
            raise ToolError("query too long (limit 1000 characters)")
        index = get_index()
        hits = index.search(query, max(1, min(k, 10)))
        if not hits:
            return "No documents match."
        n = index.snippet_chars
        return "\n".join(f"[{d.id}] {d.title}: {d.text[:n]}{'...' if len(d.text) > n else ''}"
                         for d, _ in hits)

    def read(doc_id: str) -> str:
        """Read the full text of one document.

        Args:
            doc_id: The document id shown in search results, e.g. "doc-7".
        """
        index = get_index()
        doc = index.docs.get(doc_id.strip().strip("[]"))
        if doc is None:
            raise ToolError(f"no document with id {doc_id[:50]!r}; use an id from the search results")
        return f"{doc.title}\n\n{doc.text[: index.max_read_chars]}"

    return [Tool(search), Tool(read)]
