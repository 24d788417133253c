"""``agentrl/Search-v0``: multi-hop questions over a generated local document collection.

Each task draws one of ``n_worlds`` collections (generated from the world's seed: ~40
encyclopedia-style documents about invented people, companies and cities, so no model can
know the answers beforehand) and a question that needs 2-3 documents, e.g. "In which
country was the founder of Velkor Systems born?" (company -> founder -> birth city ->
country). Tools: ``search`` (SQLite FTS5, BM25) and ``read`` (see :mod:`agentrl.tools.search`).

Reward 1 for the exact answer inside ``<answer></answer>`` after normalization (case,
punctuation, articles and extra spaces ignored), else 0. There is no partial credit.
"""

from __future__ import annotations

import functools
import re
import string
from typing import Any

import numpy as np

from agentrl.env import Task, ToolEnv
from agentrl.errors import ConfigError
from agentrl.parsers import ToolCall
from agentrl.tool import ToolError
from agentrl.tools.search import Document, DocumentIndex, search_tools

__all__ = ["SearchEnv", "build_collection", "normalize_answer"]

_SYL = ("ka", "lo", "mi", "ren", "sa", "tor", "vel", "zu", "dan", "ish", "or", "bel", "qui",
        "nar", "tes", "vok", "ul", "fen", "gra", "hal", "pim", "ro", "sen", "tav", "wy", "xo")
_JOBS = ("chemist", "engineer", "painter", "economist", "architect", "botanist", "composer")
_INDUSTRIES = ("shipping", "software", "textile", "battery", "furniture", "optics", "food")
_PRODUCTS = ("lamp", "engine", "loom", "kettle", "drone", "lens", "boat", "radio", "pump", "clock")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lowercase, no punctuation, no articles, single spaces."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(_ARTICLES.sub(" ", text).split())


def _word(rng: np.random.Generator, used: set[str], parts: int) -> str:
    while True:
        w = "".join(str(rng.choice(_SYL)) for _ in range(parts)).capitalize()
        if w not in used and len(w) > 3:
            used.add(w)
            return w


def build_collection(world: int) -> tuple[list[Document], dict[str, Any]]:
    """The documents of world ``world`` and its facts (people, companies, cities)."""
    rng = np.random.default_rng([11, world])
    used: set[str] = set()
    countries = [_word(rng, used, 2) + "ia" for _ in range(4)]
    rivers = [_word(rng, used, 2) for _ in range(6)]
    cities = [{"name": _word(rng, used, 2), "country": str(rng.choice(countries)),
               "river": str(rng.choice(rivers)), "population": int(rng.integers(20, 900)) * 1000}
              for _ in range(10)]
    people = [{"name": f"{_word(rng, used, 2)} {_word(rng, used, 3)}", "year": int(rng.integers(1900, 1990)),
               "city": cities[int(rng.integers(len(cities)))]["name"], "job": str(rng.choice(_JOBS)),
               "school": cities[int(rng.integers(len(cities)))]["name"]} for _ in range(14)]
    founders = rng.choice(len(people), size=10, replace=False)
    companies = [{"name": f"{_word(rng, used, 2)} {str(rng.choice(['Systems', 'Works', 'Industries', 'Group']))}",
                  "founder": people[int(f)]["name"], "year": int(rng.integers(1950, 2020)),
                  "hq": cities[int(rng.integers(len(cities)))]["name"],
                  "industry": str(rng.choice(_INDUSTRIES)),
                  "product": f"{_word(rng, used, 2)} {str(rng.choice(_PRODUCTS))}"} for f in founders]
    docs: list[Document] = []
    for c in cities:
        docs.append(Document("", c["name"], (
            f"{c['name']} is a city in {c['country']}, on the banks of the {c['river']} river. "
            f"It has about {c['population']:,} inhabitants and a busy market.")))
    for p in people:
        docs.append(Document("", p["name"], (
            f"{p['name']} (born {p['year']}) is {'an' if p['job'][0] in 'aeiou' else 'a'} {p['job']} born in the city of {p['city']}. "
            f"{p['name'].split()[0]} studied at the university of {p['school']} and is known for "
            "work on public projects.")))
    for c in companies:
        docs.append(Document("", c["name"], (
            f"{c['name']} is {'an' if c['industry'][0] in 'aeiou' else 'a'} {c['industry']} company founded in {c['year']} by {c['founder']}. "
            f"Its headquarters are in {c['hq']}. Its best-known product is the {c['product']}.")))
    order = rng.permutation(len(docs))
    docs = [Document(f"doc-{i}", docs[j].title, docs[j].text) for i, j in enumerate(order)]
    return docs, {"cities": cities, "people": people, "companies": companies}


@functools.cache
def _world_index(world: int) -> tuple[DocumentIndex, dict[str, Any]]:
    """The index and facts of one world, built once per process and shared (read only;
    the index serializes its queries)."""
    docs, facts = build_collection(world)
    return DocumentIndex(docs), facts


class SearchEnv(ToolEnv):
    """Multi-hop questions over a generated collection; search + read tools; exact answer."""

    description = "Multi-hop questions over a generated document collection; FTS5/BM25 search and read tools."
    instructions = (
        "You answer questions using a document collection. Use the search tool to find "
        "documents and the read tool to read them; questions need facts from several "
        "documents. Give only the answer (a name, a word or a number) inside <answer></answer>."
    )

    def __init__(self, n_worlds: int = 16, max_turns: int = 8, **kwargs: Any):
        if n_worlds < 1:
            raise ConfigError(f"n_worlds must be >= 1, got {n_worlds}")
        self.n_worlds = n_worlds
        self.index: DocumentIndex | None = None
        super().__init__(search_tools(self._current), max_turns=max_turns, **kwargs)

    @staticmethod
    def _world(world: int) -> tuple[DocumentIndex, dict[str, Any]]:
        return _world_index(world)

    def _current(self) -> DocumentIndex:
        if self.index is None:  # unreachable through step(): reset draws the collection
            raise ToolError("no collection: reset first")
        return self.index

    def sample_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        world = int(rng.integers(self.n_worlds))
        self.index, facts = self._world(world)
        by_name = {d.title: d.id for d in self.index.docs.values()}
        people = {p["name"]: p for p in facts["people"]}
        cities = {c["name"]: c for c in facts["cities"]}
        company = facts["companies"][int(rng.integers(len(facts["companies"])))]
        founder = people[company["founder"]]
        kind = int(rng.integers(5))
        plan: list[tuple[str, dict[str, Any]]] = [("search", {"query": company["name"]}),
                                                  ("read", {"doc_id": by_name[company["name"]]})]
        if kind == 0:
            question, answer = f"In which city was the founder of {company['name']} born?", founder["city"]
            plan.append(("read", {"doc_id": by_name[founder["name"]]}))
        elif kind == 1:
            question = f"On which river lies the city where {company['name']} has its headquarters?"
            answer = cities[company["hq"]]["river"]
            plan.append(("read", {"doc_id": by_name[company["hq"]]}))
        elif kind == 2:
            question = f"In which country was the founder of {company['name']} born?"
            answer = cities[founder["city"]]["country"]
            plan += [("read", {"doc_id": by_name[founder["name"]]}),
                     ("read", {"doc_id": by_name[founder["city"]]})]
        elif kind == 3:
            question, answer = f"In what year was the founder of {company['name']} born?", str(founder["year"])
            plan.append(("read", {"doc_id": by_name[founder["name"]]}))
        else:
            question = f"What is the best-known product of the company founded by {founder['name']}?"
            answer = company["product"]
            plan = [("search", {"query": f"company founded by {founder['name']}"}),
                    ("read", {"doc_id": by_name[company["name"]]})]
        return Task(prompt=question, answer=answer, id=f"search-w{world}-{kind}-{by_name[company['name']]}",
                    metadata={"world": world, "plan": plan})

    def grade(self, task: Task, answer: str) -> float:
        return 1.0 if normalize_answer(answer) == normalize_answer(task.answer) else 0.0

    def oracle_actions(self, task: Task) -> list[str]:
        calls = [self.parser.render([ToolCall(n, a)]) for n, a in task.metadata["plan"]]
        return [*calls, f"<answer>{task.answer}</answer>"]

