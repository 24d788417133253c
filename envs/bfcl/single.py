"""Single-turn BFCL categories as environments: one question, one reply, checked by AST rules.

``agentrl/BFCL-<category>-v0`` (e.g. ``agentrl/BFCL-simple_python-v0``). Each entry's
functions are shown as tools (BFCL's type conventions for Java and JavaScript, see
:func:`agentrl.envs.bfcl.langs.language_schema`), the model replies once in the env's
tool-call format (``hermes``, ``json`` or ``pythonic``; native ``tool_calls`` on a message
action too), and the reply is checked: AST categories against the possible answers
(:mod:`agentrl.envs.bfcl.checker`), ``irrelevance`` categories pass with no call,
``live_relevance`` with at least one. A reply with a malformed call counts as no decodable
call, as in BFCL. Reward 1 or 0; the step info has ``failure`` (the taxonomy entry),
``check`` (BFCL-style error type) and ``calls`` (decoded).
"""

from __future__ import annotations

import json
from typing import Any

from agentrl.env import AgentEnv, Message
from agentrl.envs.bfcl.answers import failure_kind, first_answer, placeholder_call
from agentrl.envs.bfcl.checker import Call, check_calls
from agentrl.envs.bfcl.data import SINGLE_TURN, language_of, load_answers, load_entries
from agentrl.envs.bfcl.langs import language_schema
from agentrl.errors import ConfigError, ResetNeededError
from agentrl.parsers import ParseResult, ToolCall, get_parser, parse_native_calls

__all__ = ["BFCLSingleTurnEnv", "SYSTEM_PROMPT", "decode_calls"]

#: Instructions before the tools (BFCL's task, in our words).
SYSTEM_PROMPT = (
    "You are an expert in composing function calls. You are given a question and a set of "
    "possible functions. Based on the question, make one or more function calls to achieve "
    "the purpose. If none of the functions can be used, say so and make no function call. "
    "If the question lacks parameters the functions need, say so and make no call."
)


def decode_calls(parsed: ParseResult) -> list[Call] | None:
    """The decoded calls of a reply; None when any part failed to decode (BFCL then treats
    the whole reply as undecodable)."""
    if parsed.errors:
        return None
    return [(c.name, c.arguments) for c in parsed.calls]


class BFCLSingleTurnEnv(AgentEnv):
    """One BFCL single-turn category; one task per entry (task id = BFCL entry id)."""

    description = "BFCL v4 single-turn function calling, checked with BFCL's AST rules."

    def __init__(self, category: str = "simple_python", tool_format: str = "hermes",
                 render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        if category not in SINGLE_TURN:
            raise ConfigError(f"unknown single-turn BFCL category {category!r}; known: {', '.join(SINGLE_TURN)}")
        self.category = category
        self.language = language_of(category)
        self.parser = get_parser(tool_format)
        self.entries = load_entries(category)
        self.answers = load_answers(category)
        self._index = {e["id"]: i for i, e in enumerate(self.entries)}
        self._ids = [e["id"] for e in self.entries]
        self.entry: dict[str, Any] | None = None
        self.answer: Any = None
        self._oracle_ok: dict[int, bool] = {}
        #: Red-team probes whose behaviour is BFCL's right answer here (agentrl.redteam).
        self.redteam_allowed: dict[str, str] = {}
        if category.endswith("irrelevance"):
            self.redteam_allowed = {p: "irrelevance: BFCL scores any reply without a call as correct"
                                    for p in ("no-op", "empty-answer", "answer-spraying",
                                              "nested-tags", "unclosed-tag", "megabyte-answer")}
        elif category.endswith("relevance"):
            self.redteam_allowed = {p: "relevance: BFCL scores any decodable call as correct"
                                    for p in ("answer-in-tool-call", "tool-error-spam")}

    def task_ids(self) -> list[str]:
        return list(self._ids)

    # -- prompt -----------------------------------------------------------------------
    def system_prompt(self, functions: list[dict[str, Any]]) -> str:
        tools = "\n".join(json.dumps(language_schema(f, self.language), ensure_ascii=False)
                          for f in functions)
        return (f"{SYSTEM_PROMPT}\n\nYou can call these tools:\n<tools>\n{tools}\n</tools>\n\n"
                + self.parser.format_instructions())

    def _reset(self, options: dict[str, Any]) -> tuple[list[Message], dict[str, Any]]:
        if "task_id" in options:
            index = self._index[options["task_id"]]
        else:
            index = int(self.np_random.integers(len(self.entries)))
        self.entry = self.entries[index]
        self.answer = self.answers[index] if self.answers else None
        system = self.system_prompt(self.entry["function"])
        question = [dict(m) for m in self.entry["question"][0]]
        if question and question[0].get("role") == "system":
            question[0] = {"role": "system", "content": system + "\n\n" + question[0]["content"]}
        else:
            question.insert(0, {"role": "system", "content": system})
        info = {"task_id": self.entry["id"], "success": None, "category": self.category}
        if not self._oracle_passes(index):
            # A few BFCL entries' ground truth fails BFCL's own checker; say so, so that
            # `agentrl check` does not blame the env (the entry stays in the task set).
            info["oracle_defect"] = "BFCL's own checker rejects this entry's ground truth"
        return question, info

    def _oracle_passes(self, index: int) -> bool:
        cached = self._oracle_ok.get(index)
        if cached is None:
            cached = self._oracle_ok[index] = self.judge_calls(self.oracle_calls())[0]
        return cached

    # -- step -------------------------------------------------------------------------
    def _step(self, action: str) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        return self._judge(self.parser.parse(action))

    def _step_message(self, message: Message) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        if "tool_calls" not in message:
            return self._step(message.get("content") or "")
        return self._judge(parse_native_calls(message["tool_calls"]))

    def judge_calls(self, calls: list[Call] | None) -> tuple[bool, str | None, str]:
        """(success, failure kind, BFCL error type) of decoded ``calls`` for this entry."""
        entry = self._entry()
        if self.category.endswith("irrelevance"):
            called = bool(calls)
            return (not called, "irrelevance" if called else None,
                    "irrelevance_error:decoder_success" if called else "")
        if self.category.endswith("relevance"):
            if calls:
                return True, None, ""
            return False, "no_call" if calls is not None else "unparseable_call", "relevance_error:decoder_failed"
        if calls is None:
            return False, "unparseable_call", "ast_decoder:decoder_failed"
        if not calls:
            return False, "no_call", "ast_decoder:no_call"
        verdict = check_calls(self.category, entry["function"], calls, self.answer, self.language)
        if verdict.valid:
            return True, None, ""
        return False, failure_kind(verdict, calls, self.answer), verdict.error_type

    def _judge(self, parsed: ParseResult) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        calls = decode_calls(parsed)
        success, failure, check = self.judge_calls(calls)
        info = {
            "task_id": self._entry()["id"], "category": self.category, "success": success,
            "parsed": not parsed.errors,
            "tool_calls": [{"name": n, "arguments": a, "ok": True, "error_kind": None}
                           for n, a in (calls or [])],
            "parse_errors": [e.message for e in parsed.errors],
            "failure": failure, "check": check,
        }
        return [], 1.0 if success else 0.0, True, False, info

    def _entry(self) -> dict[str, Any]:
        if self.entry is None:
            raise ResetNeededError("call reset() first")
        return self.entry

    # -- oracle -----------------------------------------------------------------------
    def oracle_calls(self) -> list[Call]:
        """The calls of the first possible answer (no call for irrelevance)."""
        entry = self._entry()
        if self.category.endswith("irrelevance"):
            return []
        if self.category.endswith("relevance"):
            return [placeholder_call(entry["function"][0])]
        return first_answer(entry["function"], self.answer, self.language)

    def oracle_action(self) -> str:
        calls = self.oracle_calls()
        if not calls:
            return "None of the available functions can be used for this request."
        return self.parser.render([ToolCall(n, a) for n, a in calls])
