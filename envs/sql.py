"""``agentrl/SQL-v0``: answer questions by querying a generated SQLite database.

Each task draws one of ``n_worlds`` databases (built from the world's seed on first use
into a per-process temporary folder: a shop with customers, products and orders, or a
school with students, courses and enrollments; a few hundred realistic rows) and a
question from templates whose parameters come from the data. The agent has one tool,
``query_sql`` (read-only, time-limited, capped output; see :mod:`agentrl.tools.sql`), and
answers with its final SQL query inside ``<answer></answer>``.

Reward 1 when the final query's result equals the gold query's result (as a multiset of
rows, floats to 4 places, column names ignored; in order when the question asks for an
order), else 0. A final answer that is not a valid read-only query scores 0.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import tempfile
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from agentrl.env import Task, ToolEnv
from agentrl.errors import ConfigError
from agentrl.parsers import ToolCall
from agentrl.tool import ToolError
from agentrl.tools.sql import ReadOnlyDatabase, query_tool, rows_key

__all__ = ["SQLEnv", "build_world"]

_FIRST = ("Ada", "Bo", "Chen", "Dara", "Emil", "Farah", "Goran", "Hana", "Ivo", "Jun", "Kira",
          "Lena", "Mateo", "Nia", "Omar", "Pia", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Vera")
_LAST = ("Berg", "Costa", "Dahl", "Evans", "Fischer", "Garcia", "Holm", "Ito", "Jensen", "Khan",
         "Lind", "Moreau", "Novak", "Okafor", "Park", "Quist", "Rossi", "Silva")
_CITIES = ("Oslo", "Lyon", "Porto", "Kyoto", "Leeds", "Graz", "Turku", "Cork", "Bergen")
_PRODUCTS = {
    "kitchen": ("kettle", "toaster", "blender", "pan", "knife set", "mixer"),
    "garden": ("hose", "rake", "shovel", "planter", "lawn lamp"),
    "office": ("desk lamp", "stapler", "notebook", "chair", "monitor stand", "pen pack"),
    "outdoor": ("tent", "lantern", "backpack", "sleeping bag", "camp stove"),
}
_DEPTS = {
    "math": ("Algebra", "Calculus", "Statistics", "Geometry"),
    "history": ("Ancient Rome", "Modern Europe", "World Wars"),
    "biology": ("Genetics", "Ecology", "Cell Biology", "Botany"),
    "physics": ("Mechanics", "Optics", "Thermodynamics"),
}

_lock = threading.Lock()
_cache_dir: Path | None = None


def _world_dir() -> Path:
    global _cache_dir
    with _lock:
        if _cache_dir is None:
            _cache_dir = Path(tempfile.mkdtemp(prefix="agentrl-sql-"))
            atexit.register(shutil.rmtree, _cache_dir, True)
        return _cache_dir


def _names(rng: np.random.Generator, n: int) -> list[str]:
    pairs = [(f, s) for f in _FIRST for s in _LAST]
    picks = rng.choice(len(pairs), size=n, replace=False)
    return [f"{pairs[i][0]} {pairs[i][1]}" for i in picks]


def _shop(conn: sqlite3.Connection, rng: np.random.Generator) -> None:
    conn.executescript(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL, signup_year INTEGER NOT NULL);"
        "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL, price REAL NOT NULL);"
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), "
        "product_id INTEGER NOT NULL REFERENCES products(id), quantity INTEGER NOT NULL, order_date TEXT NOT NULL);")
    n_cust = int(rng.integers(25, 45))
    cities = list(rng.choice(_CITIES, size=5, replace=False))
    for i, name in enumerate(_names(rng, n_cust), 1):
        conn.execute("INSERT INTO customers VALUES (?, ?, ?, ?)",
                     (i, name, str(rng.choice(cities)), int(rng.integers(2018, 2025))))
    pid = 0
    for cat, items in _PRODUCTS.items():
        for item in items:
            pid += 1
            conn.execute("INSERT INTO products VALUES (?, ?, ?, ?)",
                         (pid, item, cat, float(rng.integers(300, 20000)) / 100))
    active = rng.choice(np.arange(1, n_cust + 1), size=n_cust - 4, replace=False)
    for oid in range(1, int(rng.integers(80, 140)) + 1):
        date = f"{int(rng.integers(2022, 2025))}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"
        conn.execute("INSERT INTO orders VALUES (?, ?, ?, ?, ?)",
                     (oid, int(rng.choice(active)), int(rng.integers(1, pid + 1)),
                      int(rng.integers(1, 6)), date))


def _school(conn: sqlite3.Connection, rng: np.random.Generator) -> None:
    conn.executescript(
        "CREATE TABLE students (id INTEGER PRIMARY KEY, name TEXT NOT NULL, year INTEGER NOT NULL, city TEXT NOT NULL);"
        "CREATE TABLE courses (id INTEGER PRIMARY KEY, title TEXT NOT NULL, department TEXT NOT NULL, credits INTEGER NOT NULL);"
        "CREATE TABLE enrollments (student_id INTEGER NOT NULL REFERENCES students(id), "
        "course_id INTEGER NOT NULL REFERENCES courses(id), grade INTEGER NOT NULL, PRIMARY KEY (student_id, course_id));")
    n_students = int(rng.integers(30, 50))
    cities = list(rng.choice(_CITIES, size=4, replace=False))
    for i, name in enumerate(_names(rng, n_students), 1):
        conn.execute("INSERT INTO students VALUES (?, ?, ?, ?)",
                     (i, name, int(rng.integers(1, 5)), str(rng.choice(cities))))
    cid = 0
    for dept, titles in _DEPTS.items():
        for title in titles:
            cid += 1
            conn.execute("INSERT INTO courses VALUES (?, ?, ?, ?)", (cid, title, dept, int(rng.choice([5, 7, 10]))))
    for sid in range(1, n_students + 1):
        for c in rng.choice(np.arange(1, cid + 1), size=int(rng.integers(0, 5)), replace=False):
            conn.execute("INSERT INTO enrollments VALUES (?, ?, ?)", (sid, int(c), int(rng.integers(40, 101))))


def build_world(world: int) -> Path:
    """The database file of world ``world`` (built once per process; even: shop, odd: school)."""
    path = _world_dir() / f"world-{world}.sqlite"
    if path.is_file():
        return path
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    conn = sqlite3.connect(tmp)
    with conn:
        (_shop if world % 2 == 0 else _school)(conn, np.random.default_rng([7, world]))
    conn.close()
    os.replace(tmp, path)
    return path


def _one(conn: sqlite3.Connection, sql: str, *args: Any) -> list[Any]:
    return [r[0] for r in conn.execute(sql, args)]


def _shop_question(conn: sqlite3.Connection, rng: np.random.Generator) -> tuple[str, str, bool]:
    city = str(rng.choice(_one(conn, "SELECT DISTINCT city FROM customers ORDER BY city")))
    cat = str(rng.choice(sorted(_PRODUCTS)))
    product = str(rng.choice(_one(conn, "SELECT DISTINCT p.name FROM products p JOIN orders o ON o.product_id = p.id ORDER BY 1")))
    year = int(rng.choice(_one(conn, "SELECT DISTINCT substr(order_date, 1, 4) FROM orders ORDER BY 1")))
    k = int(rng.integers(7))
    if k == 0:
        return (f"How many customers live in {city}?",
                f"SELECT COUNT(*) FROM customers WHERE city = '{city}'", False)
    if k == 1:
        return (f"List the names of all products in the {cat} category.",
                f"SELECT name FROM products WHERE category = '{cat}'", False)
    if k == 2:
        return (f"What is the total quantity of '{product}' ordered over all orders?",
                "SELECT SUM(o.quantity) FROM orders o JOIN products p ON p.id = o.product_id "
                f"WHERE p.name = '{product}'", False)
    if k == 3:
        return (f"How many orders were placed in {year}?",
                f"SELECT COUNT(*) FROM orders WHERE order_date LIKE '{year}-%'", False)
    if k == 4:
        return ("List the names of the customers who never placed an order.",
                "SELECT name FROM customers WHERE id NOT IN (SELECT customer_id FROM orders)", False)
    if k == 5:
        return (f"For each product category, what is the total revenue (price times quantity) of its "
                f"orders from customers in {city}? Give category and revenue.",
                "SELECT p.category, SUM(p.price * o.quantity) FROM orders o JOIN products p ON p.id = o.product_id "
                f"JOIN customers c ON c.id = o.customer_id WHERE c.city = '{city}' GROUP BY p.category", False)
    return ("List the names of the 3 products with the highest total quantity ordered, "
            "from highest to lowest (ties broken by product name, alphabetically).",
            "SELECT p.name FROM orders o JOIN products p ON p.id = o.product_id GROUP BY p.id "
            "ORDER BY SUM(o.quantity) DESC, p.name ASC LIMIT 3", True)


def _school_question(conn: sqlite3.Connection, rng: np.random.Generator) -> tuple[str, str, bool]:
    dept = str(rng.choice(sorted(_DEPTS)))
    title = str(rng.choice(_one(conn, "SELECT DISTINCT c.title FROM courses c JOIN enrollments e ON e.course_id = c.id ORDER BY 1")))
    year = int(rng.integers(1, 5))
    k = int(rng.integers(6))
    if k == 0:
        return (f"How many students are in year {year}?",
                f"SELECT COUNT(*) FROM students WHERE year = {year}", False)
    if k == 1:
        return (f"List the titles of the courses of the {dept} department.",
                f"SELECT title FROM courses WHERE department = '{dept}'", False)
    if k == 2:
        return (f"What is the average grade in the course '{title}'?",
                "SELECT AVG(e.grade) FROM enrollments e JOIN courses c ON c.id = e.course_id "
                f"WHERE c.title = '{title}'", False)
    if k == 3:
        return (f"List the names of the students enrolled in '{title}'.",
                "SELECT s.name FROM students s JOIN enrollments e ON e.student_id = s.id "
                f"JOIN courses c ON c.id = e.course_id WHERE c.title = '{title}'", False)
    if k == 4:
        return ("List the names of the students not enrolled in any course.",
                "SELECT name FROM students WHERE id NOT IN (SELECT student_id FROM enrollments)", False)
    return (f"How many credits does each student in year {year} take in total? Give name and "
            "credits, for students with at least one course, from most credits to fewest "
            "(ties broken by name, alphabetically).",
            "SELECT s.name, SUM(c.credits) FROM students s JOIN enrollments e ON e.student_id = s.id "
            f"JOIN courses c ON c.id = e.course_id WHERE s.year = {year} GROUP BY s.id "
            "ORDER BY SUM(c.credits) DESC, s.name ASC", True)


class SQLEnv(ToolEnv):
    """Questions over generated SQLite databases; reward for the final query's result."""

    description = "Questions over generated SQLite databases (shop/school); read-only SQL tool; result-match reward."
    instructions = (
        "You answer questions about a SQLite database with SQL. Use the query_sql tool to "
        "explore the data and test your query. Your final answer is ONE SQL query whose "
        "result answers the question, written inside <answer></answer>."
    )

    def __init__(self, n_worlds: int = 16, max_turns: int = 6, **kwargs: Any):
        if n_worlds < 1:
            raise ConfigError(f"n_worlds must be >= 1, got {n_worlds}")
        self.n_worlds = n_worlds
        self._dbs: dict[int, ReadOnlyDatabase] = {}
        self.db: ReadOnlyDatabase | None = None
        super().__init__([query_tool(self._current)], max_turns=max_turns, **kwargs)

    def _database(self, world: int) -> ReadOnlyDatabase:
        db = self._dbs.get(world)
        if db is None:
            db = self._dbs[world] = ReadOnlyDatabase(build_world(world))
        return db

    def _current(self) -> ReadOnlyDatabase:
        if self.db is None:  # unreachable through step(): reset draws the database
            raise ToolError("no database: reset first")
        return self.db

    def sample_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        world = int(rng.integers(self.n_worlds))
        self.db = self._database(world)
        make = _shop_question if world % 2 == 0 else _school_question
        for _ in range(20):  # a question whose gold result is not empty
            question, gold, ordered = make(self.db.conn, rng)
            rows = self.db.query(gold, max_rows=10_000).rows
            if rows and any(v is not None for v in rows[0]):
                break
        prompt = f"{question}\n\nThe database schema:\n{self.db.schema()}"
        return Task(prompt=prompt, answer=gold, id=f"sql-w{world}-{zlib.crc32(gold.encode()):08x}",
                    metadata={"world": world, "ordered": ordered})

    def grade(self, task: Task, answer: str) -> float:
        db = self._database(task.metadata["world"])
        try:
            got = db.query(answer.strip().strip("`").removeprefix("sql").strip(), max_rows=10_000)
        except ToolError:
            return 0.0
        gold = db.query(task.answer, max_rows=10_000)
        if got.truncated or len(got.columns) != len(gold.columns):
            return 0.0
        ordered = bool(task.metadata["ordered"])
        return 1.0 if rows_key(got.rows, ordered) == rows_key(gold.rows, ordered) else 0.0

    def oracle_actions(self, task: Task) -> list[str]:
        call = ToolCall("query_sql", {"sql": task.answer})
        return [self.parser.render([call]), f"<answer>{task.answer}</answer>"]

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()
        self._dbs.clear()
        super().close()
