"""agentrl/Search-v0 and the FTS5 search tools."""

from __future__ import annotations

import agentrl
from agentrl.checker import run_oracle_episode
from agentrl.envs.search import build_collection, normalize_answer
from agentrl.tools.search import Document, DocumentIndex


def test_bm25_ranks_the_matching_title_first_and_any_query_is_safe():
    docs, facts = build_collection(3)
    index = DocumentIndex(docs)
    company = facts["companies"][0]["name"]
    hits = index.search(company, k=3)
    assert hits[0][0].title == company
    assert hits[0][1] <= hits[-1][1]  # bm25: lower is better
    search, read = index.tools()
    for nasty in ('AND OR NOT', '"unclosed', "name:*", "(((", "NEAR(a b)", "-", "üñí", ""):
        out = search.run({"query": nasty})
        assert out.ok, out.content
    assert read.run({"doc_id": hits[0][0].id}).content.startswith(company)
    bad = read.run({"doc_id": "doc-999"})
    assert not bad.ok and "no document with id 'doc-999'" in bad.content
    index.close()


def test_title_weight_beats_a_mention_in_the_text():
    index = DocumentIndex([Document("a", "Other", "Mentions Zorbel once in the text."),
                           Document("b", "Zorbel", "A page about something.")])
    assert [d.id for d, _ in index.search("zorbel")] == ["b", "a"]


def test_normalized_exact_answer_and_oracle():
    assert normalize_answer(" The  Wyfen kettle. ") == normalize_answer("wyfen KETTLE")
    env = agentrl.make("agentrl/Search-v0").unwrapped
    for seed in range(20):
        total, success, turns = run_oracle_episode(env, seed)
        assert success and total == 1.0 and turns >= 3  # needs at least two tool turns
        assert env.grade(env.task, env.task.answer + " or maybe something else") == 0.0
        assert env.grade(env.task, "") == 0.0
    env.close()


def test_questions_differ_across_worlds_and_need_several_documents():
    env = agentrl.make("agentrl/Search-v0").unwrapped
    prompts = set()
    for seed in range(30):
        obs, info = env.reset(seed=seed)
        prompts.add(obs[1]["content"])
        # the answer is not in the question
        assert normalize_answer(env.task.answer) not in normalize_answer(obs[1]["content"])
    assert len(prompts) > 20
    env.close()
