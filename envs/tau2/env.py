"""``agentrl/Tau2-airline-v0`` and ``agentrl/Tau2-retail-v0``: tau2-bench's customer-service domains.

The agent gets the domain's policy document as its system prompt and the domain's tools
(:mod:`~agentrl.envs.tau2.airline`, :mod:`~agentrl.envs.tau2.retail`) on a private
copy-on-write view of the domain database. The customer is a simulated user: policy-backed
by default when a user model is configured (``user="vllm:PATH"`` /
``"openai:URL#model"``, or ``$AGENTRL_USER``), prompted with the task's user scenario;
without one, the scripted user, which states the whole task (reason for the call and what
the customer knows) and says yes to confirmations.

Tasks are tau2's, in the data's splits (``split="base"``: all, ``"train"``, ``"test"``);
task ids are tau2's. Grading is tau2's default reward basis: the database after the
episode must equal the database after the task's gold actions (replayed on a fresh copy),
and every ``communicate_info`` string must appear in an assistant message (case-insensitive,
commas ignored). ``reward_basis=("DB", "COMMUNICATE", "ACTION")`` also requires every gold
action to have been called with the same arguments (tau2's ACTION check). ``nl_assertions``
(an LLM judge in tau2) are not graded.

Under tau2's default basis an agent that changes nothing passes every task whose gold
outcome is an unchanged database with nothing to communicate (refusals: 19 of 50 airline
tasks, 7 of 114 retail tasks). That is tau2's grading, kept as is; ``agentrl check`` shows
it as red-team probes that earn reward the env allows (``redteam_allowed``).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from agentrl.dialogue import DialogueEnv, dump_state
from agentrl.env import Episode, Task
from agentrl.envs.tau2.airline import AirlineTools
from agentrl.envs.tau2.data import DOMAINS, load_db, load_policy, load_split, load_tasks
from agentrl.envs.tau2.db import OverlayDB
from agentrl.envs.tau2.retail import RetailTools
from agentrl.errors import ConfigError
from agentrl.parsers import ToolCall
from agentrl.users import ScriptedUser

__all__ = ["Tau2Env"]

_TOOL_CALL = re.compile(r"<tool_call>.*?(</tool_call>|$)", re.DOTALL)
_TOOLKITS = {"airline": AirlineTools, "retail": RetailTools}
_BASES = ("DB", "COMMUNICATE", "ACTION")


def _said(episode: Episode) -> list[str]:
    """The assistant's text to the user (tool-call blocks removed), lowercased, no commas."""
    out = []
    for m in episode.messages:
        if m["role"] == "assistant":
            text = _TOOL_CALL.sub(" ", str(m.get("content") or ""))
            out.append(text.lower().replace(",", ""))
    return out


class Tau2Env(DialogueEnv):
    """One tau2-bench domain: policy, tools on the domain database, simulated customer."""

    description = "tau2-bench customer-service domain (policy, tools on the domain DB, simulated user; tau2 grading)."

    def __init__(self, domain: str = "airline", split: str = "base", max_turns: int = 30,
                 user: Any = None, reward_basis: tuple[str, ...] = ("DB", "COMMUNICATE"),
                 **kwargs: Any) -> None:
        if domain not in DOMAINS:
            raise ConfigError(f"unknown tau2 domain {domain!r}; known: {', '.join(DOMAINS)}")
        unknown = set(reward_basis) - set(_BASES)
        if unknown or not reward_basis:
            raise ConfigError(f"reward_basis must be a non-empty subset of {_BASES}, got {reward_basis!r}")
        self.reward_basis = tuple(reward_basis)
        #: Probes that earn reward under tau2's own grading (see the module docstring).
        self.redteam_allowed = {} if "ACTION" in self.reward_basis else {
            p: "tau2 grading: tasks whose gold outcome is an unchanged DB and nothing to say "
               "(refusals) pass for an agent that changes nothing"
            for p in ("no-op", "empty-answer", "answer-spraying", "nested-tags", "unclosed-tag",
                      "megabyte-answer", "answer-in-tool-call", "tool-error-spam")}
        self.domain, self.split = domain, split
        self._ids = list(load_split(domain, split))
        self._tasks = load_tasks(domain)
        self._base = load_db(domain)
        self.instructions = load_policy(domain)
        self.toolkit = _TOOLKITS[domain](OverlayDB(self._base))
        self._gold: dict[str, str] = {}
        super().__init__(self.toolkit.tools(), max_turns=max_turns, user=user, **kwargs)

    def task_ids(self) -> list[str]:
        return list(self._ids)

    def sample_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        task_id = options.get("task_id") or self._ids[int(rng.integers(len(self._ids)))]
        raw = self._tasks[task_id]
        self.toolkit.db = OverlayDB(self._base)
        instructions = raw["user_scenario"]["instructions"]
        request = " ".join(str(instructions.get(k) or "").strip() for k in ("reason_for_call", "known_info"))
        return Task(prompt=request.strip(), answer=None, id=task_id, metadata={"raw": raw})

    def scripted_user(self, task: Task) -> ScriptedUser:
        return ScriptedUser(task.prompt, confirms=True, max_idle=2)

    def user_instructions(self, task: Task) -> str:
        scenario = task.metadata["raw"]["user_scenario"]
        parts = [str(scenario.get("persona") or "")]
        for key, label in (("reason_for_call", "Reason for your call"), ("known_info", "What you know"),
                           ("unknown_info", "What you do not know"), ("task_instructions", "Instructions")):
            value = scenario["instructions"].get(key)
            if value:
                parts.append(f"{label}: {value}")
        return "\n".join(p for p in parts if p)

    def gold_state(self, task: Task) -> str:
        """The database diff after the task's gold actions (replayed once, then cached)."""
        if task.id not in self._gold:
            episode_db = self.toolkit.db
            self.toolkit.db = OverlayDB(self._base)
            try:
                for action in task.metadata["raw"]["evaluation_criteria"].get("actions") or []:
                    self.tools[action["name"]].run(action["arguments"])
                self._gold[task.id] = self.toolkit.db.diff()
            finally:
                self.toolkit.db = episode_db
        return self._gold[task.id]

    def grade_episode(self, task: Task, episode: Episode) -> float:
        criteria = task.metadata["raw"]["evaluation_criteria"]
        if "DB" in self.reward_basis and self.toolkit.db.diff() != self.gold_state(task):
            return 0.0
        if "COMMUNICATE" in self.reward_basis:
            said = _said(episode)
            if not all(any(str(i).lower() in s for s in said) for i in criteria.get("communicate_info") or []):
                return 0.0
        if "ACTION" in self.reward_basis:
            made = [(c.name, dump_state(c.arguments)) for c in episode.calls]
            for action in criteria.get("actions") or []:
                if (action["name"], dump_state(action["arguments"])) not in made:
                    return 0.0
        return 1.0

    def oracle_actions(self, task: Task) -> list[str]:
        criteria = task.metadata["raw"]["evaluation_criteria"]
        calls = [self.parser.render([ToolCall(a["name"], a["arguments"])]) for a in criteria.get("actions") or []]
        infos = [str(i) for i in criteria.get("communicate_info") or []]
        final = "Your request has been handled." + (f" The details: {'; '.join(infos)}." if infos else "")
        return [*calls, final]
