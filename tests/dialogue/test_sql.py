"""agentrl/SQL-v0 and the read-only SQL tool: limits, errors, grading."""

from __future__ import annotations

import sqlite3

import pytest

import agentrl
from agentrl.checker import run_oracle_episode
from agentrl.tool import ToolError
from agentrl.tools.sql import ReadOnlyDatabase, rows_key


@pytest.fixture()
def db(tmp_path):
    path = tmp_path / "t.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x INTEGER, y TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"r{i}") for i in range(200)])
    conn.close()
    out = ReadOnlyDatabase(path, time_limit_s=0.3, max_rows=10, max_chars=300)
    yield out
    out.close()


def test_writes_attach_pragma_and_temp_tables_are_refused(db):
    for sql in ("DELETE FROM t", "INSERT INTO t VALUES (1, 'a')", "DROP TABLE t",
                "ATTACH DATABASE ':memory:' AS m", "PRAGMA writable_schema = 1",
                "CREATE TEMP TABLE z (a)"):
        with pytest.raises(ToolError, match="only reading queries|SQL error"):
            db.query(sql)
    assert db.query("SELECT COUNT(*) FROM t").rows == [(200,)]


def test_time_limit_row_cap_output_cap_and_errors(db):
    with pytest.raises(ToolError, match="time limit of 0.3 s"):
        db.query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c")
    res = db.query("SELECT * FROM t")
    assert len(res.rows) == 10 and res.truncated
    out = db.tool().run({"sql": "SELECT y, y, y, y, y, y, y FROM t"})
    assert out.ok and "output cut at 300 characters" in out.content
    bad = db.tool().run({"sql": "SELEC x FROM t"})
    assert not bad.ok and bad.content.startswith("Error: SQL error: near \"SELEC\"")
    two = db.tool().run({"sql": "SELECT 1; SELECT 2"})
    assert not two.ok and "one statement" in two.content


def test_rows_key_order_and_float_normalization():
    assert rows_key([(1, 2.00001), ("a", 3.0)], False) == rows_key([("a", 3), (1, 2.0)], False)
    assert rows_key([(1,), (2,)], True) != rows_key([(2,), (1,)], True)


def test_sql_env_grades_the_final_query_result():
    env = agentrl.make("agentrl/SQL-v0").unwrapped
    scores = {"gold": [], "equivalent": [], "wrong": [], "not_sql": []}
    for seed in range(12):
        env.reset(seed=seed)
        gold = env.task.answer
        scores["gold"].append(env.grade(env.task, gold))
        scores["equivalent"].append(env.grade(env.task, f"```sql\nSELECT * FROM ({gold})\n```"))
        scores["wrong"].append(env.grade(env.task, gold.replace("SELECT", "SELECT 1,", 1)))
        scores["not_sql"].append(env.grade(env.task, "42"))
    assert scores["gold"] == [1.0] * 12 and scores["equivalent"] == [1.0] * 12
    assert scores["wrong"] == [0.0] * 12 and scores["not_sql"] == [0.0] * 12
    # an ordered question: the reversed order scores 0
    for seed in range(200):
        env.reset(seed=seed)
        if env.task.metadata["ordered"] and len(env.db.query(env.task.answer).rows) > 1:
            rev = f"SELECT * FROM ({env.task.answer}) ORDER BY 1 DESC, 2 DESC" if "credits" in env.task.prompt \
                else f"SELECT * FROM ({env.task.answer}) ORDER BY rowid DESC"
            got = env.db.query(rev).rows
            if got != env.db.query(env.task.answer).rows:
                assert env.grade(env.task, rev) == 0.0
                break
    else:
        pytest.fail("no ordered question found")
    total, success, turns = run_oracle_episode(env, seed=3)
    assert (total, success, turns) == (1.0, True, 2)
    env.close()
