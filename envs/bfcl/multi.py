"""Multi-turn BFCL categories: several user requests, tools on stateful backends.

``agentrl/BFCL-multi_turn_base-v0`` (and ``_miss_func``, ``_miss_param``,
``_long_context``). Each entry is a conversation of user turns. Within a turn the model
calls tools (run on the entry's backends: file system, trading bot, travel, ...; see
:mod:`agentrl.envs.bfcl.backends`) and sees their results; a reply without a decodable
call ends the turn. At each turn's end the turn is checked as BFCL does:

- the ground truth calls of that turn run on a second set of instances;
- if the ground truth made calls, the model must have made some in this turn;
- **state check**: every public attribute of every backend instance equals the ground
  truth's;
- **response check**: every ground-truth result of this turn appears among the results of
  all the model's calls so far (as a multiset, any order).

Turns whose ground truth is empty (a missing function or parameter the model should ask
about) are not checked. ``miss_func`` adds the held-out function's doc at its turn,
with BFCL's message. A failed turn ends the episode with reward 0 (BFCL would go on and
still score it 0); passing every turn gives 1. More than 20 steps in one turn fails the
entry (BFCL's force-termination limit).
"""

from __future__ import annotations

import json
from typing import Any

from agentrl.env import AgentEnv, Message
from agentrl.envs.bfcl.backends import Backends, parse_call_text, states_differ
from agentrl.envs.bfcl.data import MULTI_TURN, func_docs, load_answers, load_entries
from agentrl.envs.bfcl.langs import language_schema
from agentrl.envs.bfcl.single import SYSTEM_PROMPT, decode_calls
from agentrl.errors import ConfigError, ResetNeededError
from agentrl.parsers import ParseResult, ToolCall, get_parser, parse_native_calls

__all__ = ["BFCLMultiTurnEnv", "STEP_LIMIT", "MORE_FUNCTIONS"]

#: Most model steps in one user turn before the entry fails (BFCL's limit).
STEP_LIMIT = 20
#: BFCL's user message when held-out functions become available.
MORE_FUNCTIONS = "I have updated some more functions you can choose from. What about now?"
_DONE = "I have completed the request."
_CANNOT = "I cannot complete this with the available functions and information; please provide what is missing."


class BFCLMultiTurnEnv(AgentEnv):
    """One BFCL multi-turn category; one task per entry."""

    description = "BFCL v4 multi-turn function calling on stateful backends (state + response checks)."

    def __init__(self, category: str = "multi_turn_base", tool_format: str = "hermes",
                 render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        if category not in MULTI_TURN:
            raise ConfigError(f"unknown multi-turn BFCL category {category!r}; known: {', '.join(MULTI_TURN)}")
        self.category = category
        self.long_context = category == "multi_turn_long_context"
        self.parser = get_parser(tool_format)
        self.entries = load_entries(category)
        self.answers = load_answers(category)
        self._index = {e["id"]: i for i, e in enumerate(self.entries)}
        self.entry: dict[str, Any] | None = None
        self.truth: list[list[str]] = []

    def task_ids(self) -> list[str]:
        return [e["id"] for e in self.entries]

    # -- episode ----------------------------------------------------------------------
    def _reset(self, options: dict[str, Any]) -> tuple[list[Message], dict[str, Any]]:
        if "task_id" in options:
            index = self._index[options["task_id"]]
        else:
            index = int(self.np_random.integers(len(self.entries)))
        entry = self.entry = self.entries[index]
        self.truth = self.answers[index]
        classes = list(entry["involved_classes"])
        held_out = {name for names in (entry.get("missed_function") or {}).values() for name in names}
        self.functions = [d for c in classes for d in func_docs(c) if d["name"] not in held_out]
        self.model = Backends(classes, entry["initial_config"], self.long_context)
        self.ground = Backends(classes, entry["initial_config"], self.long_context)
        self.user_turn = 0
        self.steps_in_turn = 0
        self.calls_in_turn = 0
        self.turn_had_error = False
        self.model_results: list[str] = []
        self._oracle_sent = False
        tools = "\n".join(json.dumps(language_schema(f, "python"), ensure_ascii=False)
                          for f in self.functions)
        system = (f"{SYSTEM_PROMPT}\n\nYou can call these tools:\n<tools>\n{tools}\n</tools>\n\n"
                  + self.parser.format_instructions())
        messages = [{"role": "system", "content": system}, *self._user_messages(0)]
        return messages, {"task_id": entry["id"], "success": None, "category": self.category,
                          "user_turns": len(entry["question"])}

    def _user_messages(self, turn: int) -> list[Message]:
        entry = self._entry()
        messages = [dict(m) for m in entry["question"][turn]]
        added: list[dict[str, Any]] = []
        for name in (entry.get("missed_function") or {}).get(str(turn), []):
            docs = [d for c in entry["involved_classes"] for d in func_docs(c) if d["name"] == name]
            added.extend(docs)
            self.functions.extend(docs)
        if added:
            listing = "\n".join(json.dumps(language_schema(d, "python"), ensure_ascii=False) for d in added)
            messages.append({"role": "user", "content": f"<tools>\n{listing}\n</tools>\n{MORE_FUNCTIONS}"})
        if not messages:  # keep the conversation well-formed
            messages.append({"role": "user", "content": "Please continue."})
        return messages

    def _step(self, action: str) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        return self._advance(self.parser.parse(action))

    def _step_message(self, message: Message) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        if "tool_calls" not in message:
            return self._step(message.get("content") or "")
        return self._advance(parse_native_calls(message["tool_calls"]))

    def _advance(self, parsed: ParseResult) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        entry = self._entry()
        calls = decode_calls(parsed)
        info: dict[str, Any] = {"task_id": entry["id"], "category": self.category,
                                "success": None, "parsed": not parsed.errors,
                                "parse_errors": [e.message for e in parsed.errors],
                                "user_turn": self.user_turn, "tool_calls": []}
        self.steps_in_turn += 1
        if calls:
            messages = []
            for k, (name, args) in enumerate(calls):
                if isinstance(args, dict):
                    text, ok = self.model.run(name, (), args)
                else:
                    text, ok = f"Error during execution: arguments of {name} must be an object", False
                self.model_results.append(text)
                self.turn_had_error |= not ok
                info["tool_calls"].append({"name": name, "arguments": args, "ok": ok,
                                           "error_kind": None if ok else "tool_error"})
                messages.append({"role": "tool", "name": name, "content": text,
                                 "tool_call_id": f"call_{self.turn}_{k}"})
            self.calls_in_turn += len(calls)
            if self.steps_in_turn >= STEP_LIMIT:
                return self._end(messages, False, "limit_hit", "multi_turn:force_terminated", info)
            return messages, 0.0, False, False, info
        failure, check = self._check_turn()
        if failure is not None:
            return self._end([], False, failure, check, info)
        self.user_turn += 1
        if self.user_turn >= len(entry["question"]):
            return self._end([], True, None, "", info)
        self.steps_in_turn = self.calls_in_turn = 0
        self.turn_had_error = False
        self._oracle_sent = False
        return self._user_messages(self.user_turn), 0.0, False, False, info

    def _check_turn(self) -> tuple[str | None, str]:
        """(failure kind, BFCL error type) of the turn that just ended; (None, "") if it passed."""
        truth = self.truth[self.user_turn]
        results = [self.ground.run(name, args, kwargs)[0]
                   for name, args, kwargs in (parse_call_text(c) for c in truth)]
        if not truth:
            return None, ""
        if self.calls_in_turn == 0:
            return "no_call", "multi_turn:empty_turn_model_response"
        if states_differ(self.model, self.ground):
            kind = "tool_error" if self.turn_had_error else "wrong_args"
            return kind, "multi_turn:instance_state_mismatch"
        remaining = list(self.model_results)
        for item in results:
            if item in remaining:
                remaining.remove(item)
            else:
                return "missing_call", "multi_turn:execution_response_mismatch"
        return None, ""

    def _end(self, messages: list[Message], success: bool, failure: str | None, check: str,
             info: dict[str, Any]) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        info.update(success=success, failure=failure, check=check,
                    turns_passed=self.user_turn if not success else len(self._entry()["question"]))
        truncated = failure == "limit_hit"
        return messages, 1.0 if success else 0.0, not truncated, truncated, info

    def _entry(self) -> dict[str, Any]:
        if self.entry is None:
            raise ResetNeededError("call reset() first")
        return self.entry

    # -- oracle -----------------------------------------------------------------------
    def oracle_action(self) -> str:
        """The ground truth calls of the current turn, then a closing message."""
        truth = self.truth[self.user_turn] if self.entry is not None else []
        if self._oracle_sent or not truth:
            self._oracle_sent = False
            return _DONE if truth else _CANNOT
        self._oracle_sent = True
        calls = []
        for text in truth:
            name, args, kwargs = parse_call_text(text)
            calls.append(ToolCall(name, self.model.keyword_args(name, args, kwargs)))
        return self.parser.render(calls)
