"""Simulated users for dialogue environments: scripted (deterministic) and policy-backed.

A :class:`UserSimulator` plays the customer in a dialogue env. The env asks it for the
opening message at reset (:meth:`UserSimulator.start`) and for a reply to every assistant
message that has no tool call (:meth:`UserSimulator.reply`); a :class:`UserTurn` with
``stop=True`` ends the conversation (the env then grades the episode).

- :class:`ScriptedUser`: a goal (the opening request), hidden :class:`Fact` s revealed
  only when the assistant asks for them (by keyword), fixed phrasings picked by the seed,
  a yes to confirmation questions, and the stop signal when it has nothing left to say.
  Same seed and same conversation, same replies.
- :class:`PolicyUser`: any agentrl policy (a spec such as ``vllm:tiny`` or
  ``openai:URL#model``, or a :class:`~agentrl.policy.base.Policy`) prompted with the
  task's user instructions, roles flipped (the agent's messages are its ``user`` turns).
  It ends the conversation by writing :data:`STOP`.

The user's text goes back to the agent as ``user`` messages, so the rollout collector
records it as environment tokens (loss mask 0): a simulated user is never trained on.
:class:`~agentrl.dialogue.DialogueEnv` wires a user into a :class:`~agentrl.env.ToolEnv`.
"""

from __future__ import annotations

import abc
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agentrl.errors import ConfigError

__all__ = [
    "STOP",
    "Fact",
    "UserTurn",
    "UserSimulator",
    "ScriptedUser",
    "PolicyUser",
    "load_user_policy",
]

#: The marker a user writes to end the conversation (tau2-bench's convention).
STOP = "###STOP###"

_CONFIRM = re.compile(
    r"\b(confirm|proceed|go ahead|shall i|should i|do you want|would you like|is that (ok|okay|correct|right))\b",
    re.IGNORECASE,
)
_OPENERS = ("Hi! ", "Hello. ", "Hi there, ")
_YES = ("Yes, please go ahead.", "Yes, I confirm.", "Yes, that's right, please do it.")
_BYE = ("Thanks, that's all I needed.", "Great, thank you. Bye!", "Okay, thanks for your help.")
_UNKNOWN = "Sorry, I don't know that."


@dataclass(frozen=True)
class Fact:
    """Something the user knows but says only when asked (an order id, an email)."""

    value: str
    """The fact itself, e.g. ``"#W1234"``."""
    asked_by: tuple[str, ...]
    """Words or phrases in an assistant message that ask for it (case-insensitive)."""
    phrasing: str = "It's {value}."
    """How the user states it; ``{value}`` is replaced by the value."""

    def __post_init__(self) -> None:
        if not self.asked_by or not all(isinstance(w, str) and w for w in self.asked_by):
            raise ConfigError("Fact.asked_by needs at least one non-empty keyword")
        if "{value}" not in self.phrasing:
            raise ConfigError(f"Fact.phrasing must contain '{{value}}', got {self.phrasing!r}")


@dataclass(frozen=True)
class UserTurn:
    """One message of the simulated user."""

    text: str
    """What the user says (sent to the agent as a ``user`` message unless ``stop``)."""
    stop: bool = False
    """True: the user ends the conversation (the env grades the episode)."""


class UserSimulator(abc.ABC):
    """The customer of a dialogue env. One instance plays one episode at a time."""

    @abc.abstractmethod
    def start(self, seed: int) -> str:
        """Begin a new conversation (``seed`` fixes its randomness); the opening message."""

    @abc.abstractmethod
    def reply(self, messages: Sequence[Mapping[str, Any]]) -> UserTurn:
        """The reply to the conversation so far (its last message is the assistant's)."""

    def close(self) -> None:
        """Release resources (default: none)."""
        return None


def _asks(text: str, phrase: str) -> bool:
    return re.search(r"\b" + re.escape(phrase.lower()) + r"\b", text) is not None


class ScriptedUser(UserSimulator):
    """A deterministic user: a goal, hidden facts revealed when asked, fixed phrasings.

    Args:
        request: the goal, stated in the opening message (e.g. "I want a refund for my
            lamp order.").
        facts: name -> :class:`Fact`; each is revealed only in reply to an assistant message
            that contains one of its ``asked_by`` keywords.
        confirms: answer yes to confirmation questions ("Do you confirm ...?").
        max_idle: assistant messages in a row with nothing to answer before the user stops
            (1: stop at the first such message).

    Reply rules, in order: the facts asked for (in the order of ``facts``), plus a yes when
    the message also asks for confirmation; else a yes to a confirmation question; else
    (nothing to say) a goodbye with ``stop=True``. Phrasings are drawn once per
    conversation from the seed given to :meth:`start`.
    """

    def __init__(self, request: str, facts: Mapping[str, Fact] | None = None, *,
                 confirms: bool = True, max_idle: int = 1) -> None:
        if not isinstance(request, str) or not request.strip():
            raise ConfigError("ScriptedUser needs a non-empty request")
        if max_idle < 1:
            raise ConfigError(f"max_idle must be >= 1, got {max_idle}")
        self.request = request.strip()
        self.facts = dict(facts or {})
        self.confirms = confirms
        self.max_idle = max_idle
        self.revealed: list[str] = []
        self._idle = 0
        self._phrases = (_OPENERS[0], _YES[0], _BYE[0])

    def start(self, seed: int) -> str:
        rng = np.random.default_rng(seed)
        self._phrases = tuple(p[int(rng.integers(len(p)))] for p in (_OPENERS, _YES, _BYE))
        self.revealed = []
        self._idle = 0
        return self._phrases[0] + self.request

    def reply(self, messages: Sequence[Mapping[str, Any]]) -> UserTurn:
        last = str(messages[-1].get("content") or "") if messages else ""
        text = last.lower()[-20_000:]
        asked = [name for name, fact in self.facts.items()
                 if any(_asks(text, w) for w in fact.asked_by)]
        confirm = self.confirms and _CONFIRM.search(text) is not None
        parts = [self.facts[name].phrasing.format(value=self.facts[name].value) for name in asked]
        for name in asked:
            if name not in self.revealed:
                self.revealed.append(name)
        if confirm:
            parts.append(self._phrases[1])
        if parts:
            self._idle = 0
            return UserTurn(" ".join(parts))
        self._idle += 1
        if self._idle >= self.max_idle:
            return UserTurn(f"{self._phrases[2]} {STOP}", stop=True)
        return UserTurn(_UNKNOWN)


# -- policy-backed users ---------------------------------------------------------------

_POLICIES: dict[str, Any] = {}
_POLICY_LOCK = threading.Lock()
_LOOP: Any = None


def load_user_policy(spec: str, **kw: Any) -> Any:
    """The policy for ``spec`` (``vllm:tiny``, ``openai:URL#model``), loaded once per process.

    Every dialogue env of the process that names the same spec shares one engine.
    """
    with _POLICY_LOCK:
        policy = _POLICIES.get(spec)
        if policy is None:
            from agentrl.policy.loader import load_policy

            policy = _POLICIES[spec] = load_policy(spec, **kw)
        return policy


def _background_loop() -> Any:
    global _LOOP
    with _POLICY_LOCK:
        if _LOOP is None:
            from agentrl.policy._common import BackgroundLoop

            _LOOP = BackgroundLoop("agentrl-user")
        return _LOOP


_USER_SYSTEM = (
    "You are playing a customer talking to a customer-service agent. Follow your "
    "instructions below. Write only what the customer says, one short message at a time. "
    "Give information only when the agent asks for it. When your request is handled, or "
    f"cannot be handled, write {STOP} to end the conversation.\n\nInstructions:\n"
)
_GREETING = "Hi! How can I help you today?"


class PolicyUser(UserSimulator):
    """A user played by a language model (any agentrl policy).

    Args:
        policy: a :class:`~agentrl.policy.base.Policy`, or a spec string for
            :func:`load_user_policy` (``vllm:tiny``, ``openai:URL#model``).
        instructions: the task's user instructions (who the user is, what they want,
            what they know).
        temperature: sampling temperature of the user's replies.
        max_tokens: longest reply, in tokens.
        max_chars: replies (and the agent messages shown to the user) are cut to this.

    The model sees a system prompt with ``instructions`` and the conversation with the
    roles flipped (the agent's messages as ``user`` turns, its own as ``assistant``); tool
    messages and tool-call turns are left out. :data:`STOP` in its reply ends the
    conversation. Sampling is seeded from :meth:`start`'s seed, so a seeded episode is
    reproducible where the backend honours seeds.
    """

    def __init__(self, policy: Any, instructions: str, *, temperature: float = 0.0,
                 max_tokens: int = 96, max_chars: int = 2000) -> None:
        if isinstance(policy, str):
            policy = load_user_policy(policy)
        if not hasattr(policy, "generate") or not hasattr(policy, "tokenizer"):
            raise ConfigError(f"PolicyUser needs a Policy or a policy spec, got {type(policy).__name__}")
        self.policy = policy
        self.instructions = instructions
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_chars = max_chars
        self._seed = 0

    def start(self, seed: int) -> str:
        self._seed = int(seed) % (2**31)
        return self._generate([{"role": "user", "content": _GREETING}]).text

    def reply(self, messages: Sequence[Mapping[str, Any]]) -> UserTurn:
        flipped: list[dict[str, str]] = [{"role": "user", "content": _GREETING}]
        for m in messages:
            content = str(m.get("content") or "").strip()
            if m.get("role") == "user":
                role = "assistant"
            elif m.get("role") == "assistant" and "<tool_call>" not in content and not m.get("tool_calls"):
                role = "user"
            else:
                continue
            if not content:
                continue
            content = content[-self.max_chars:]
            if flipped[-1]["role"] == role:
                flipped[-1]["content"] += "\n" + content
            else:
                flipped.append({"role": role, "content": content})
        if flipped[-1]["role"] != "user":
            flipped.append({"role": "user", "content": "(no reply)"})
        return self._generate(flipped)

    def _generate(self, turns: list[dict[str, str]]) -> UserTurn:
        from agentrl.policy.base import SamplingParams

        messages = [{"role": "system", "content": _USER_SYSTEM + self.instructions}, *turns]
        tok = self.policy.tokenizer
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, Mapping):  # a BatchEncoding in some transformers versions
            ids = ids["input_ids"]
        params = SamplingParams(temperature=self.temperature, max_tokens=self.max_tokens,
                                seed=self._seed + len(turns))
        generations = _background_loop().run_sync(self.policy.generate(list(ids), params))
        text = generations[0].text.strip()[: self.max_chars]
        stop = STOP in text
        text = text.replace(STOP, "").strip()
        if not text:
            text = "Thanks, bye." if stop else "..."
        return UserTurn(text, stop=stop)
