"""The policy contract: token ids (or messages) in, token ids, text and logprobs out.

Shaped like an httpx transport: one small abstract base with one method to implement
(:meth:`Policy.generate`), default implementations per backend, and a fake beside them.
What only some backends can do is a capability, a runtime-checkable Protocol:
:class:`WeightSync` (take new weights), :class:`TokenScorer` (score prompt tokens),
:class:`ChatSampler` (sample from chat messages). Callers check with
:func:`require_capability`, which raises a :class:`~agentrl.errors.CapabilityError` that
names the backends that have it.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from agentrl.errors import CapabilityError, ConfigError

__all__ = [
    "SamplingParams",
    "Generation",
    "Policy",
    "WeightSync",
    "TokenScorer",
    "ChatSampler",
    "require_capability",
]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one completion (or ``n`` of them) from a policy."""

    temperature: float = 1.0
    """Softmax temperature; 0 means greedy."""
    top_p: float = 1.0
    """Nucleus sampling mass in (0, 1]."""
    max_tokens: int = 256
    """Maximum number of new tokens per completion."""
    stop: tuple[str, ...] = ()
    """Strings that end generation; the tokens up to the one completing a stop string are
    returned, so the stop string stays in the output (token-in-token-out)."""
    seed: int | None = None
    """Per-request seed for reproducible sampling, where the backend supports it."""
    n: int = 1
    """Number of completions for the same prompt."""

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.n < 1:
            raise ConfigError(f"n must be >= 1, got {self.n}")
        if isinstance(self.stop, str) or not all(isinstance(s, str) for s in self.stop):
            raise ConfigError("stop must be a tuple of strings")


@dataclass
class Generation:
    """One completion: the exact generated token ids, their text and sampling logprobs."""

    token_ids: list[int]
    """Generated token ids, exactly as sampled (token-in-token-out)."""
    text: str
    """Decoded text of ``token_ids`` (special tokens such as EOS left out)."""
    logprobs: list[float]
    """Logprob of each sampled token under the model: raw logits at temperature 1, before
    top-p (what vLLM reports by default and what a learner recomputes)."""
    finish_reason: str = "stop"
    """``stop`` (EOS or a stop string) or ``length`` (hit ``max_tokens``)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Backend extras (``stop_reason``, a chat API's ``tool_calls``)."""
    weight_version: int | None = None
    """The policy's :attr:`WeightSync.weight_version` this completion was sampled with
    (``None`` for backends without weight sync)."""


class Policy(abc.ABC):
    """Base class of every policy backend.

    Implement :meth:`generate`. ``tokenizer`` must be a ``transformers`` tokenizer with a
    chat template: the rollout collector uses it to render environment messages.
    Backends are async and safe to call with many requests in flight.
    """

    #: A transformers tokenizer (with ``apply_chat_template``).
    tokenizer: Any
    #: Context window in tokens (prompt + completion), where known; ``None`` if unknown.
    max_model_len: int | None = None

    @abc.abstractmethod
    async def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> list[Generation]:
        """Sample ``params.n`` completions continuing ``prompt_ids``."""

    async def prepare(self) -> None:
        """Load what the backend needs before the first request (e.g. a server's model
        name and tokenizer); raises the backend's error if it cannot. Default: nothing."""
        return None

    async def aclose(self) -> None:
        """Release the backend's resources (engine, HTTP client)."""
        return None

    def close(self) -> None:
        """Synchronous :meth:`aclose` for scripts."""
        return None


@runtime_checkable
class WeightSync(Protocol):
    """A policy that takes new weights in place (the trainer pushes them after each step).

    ``weight_version`` is 0 for the weights the policy was loaded with and goes up by one
    per successful update; every :class:`Generation` records the version it was sampled
    with, so no completion mixes two versions.
    """

    weight_version: int

    def update_weights(
        self, weights: Any, *, verify: bool = True, atol: float | None = None
    ) -> float | None:
        """Load ``weights`` (a state dict ``name -> tensor`` or a ``torch.nn.Module``);
        blocking. Returns the verification's max abs logprob difference, or ``None``."""
        ...

    async def aupdate_weights(
        self, weights: Any, *, verify: bool = True, atol: float | None = None
    ) -> float | None:
        """:meth:`update_weights` for async code."""
        ...


@runtime_checkable
class TokenScorer(Protocol):
    """A policy that scores given tokens: the logprob of each under the current weights."""

    async def prompt_logprobs(self, ids: Sequence[int]) -> list[float]:
        """``log p(ids[t] | ids[:t])`` for ``t = 1 .. len(ids) - 1`` (``len(ids) - 1`` values)."""
        ...


@runtime_checkable
class ChatSampler(Protocol):
    """A policy that samples replies to chat messages (the server renders the template)."""

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        params: SamplingParams,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[Generation]:
        """Sample ``params.n`` replies to ``messages`` (``tools``: OpenAI tool schemas)."""
        ...


#: What each capability lets a caller do, and the backends that have it (error messages).
_CAPABILITIES: dict[type, tuple[str, str]] = {
    WeightSync: (
        "take weight updates",
        "use vllm: or hf:, or openai: with weight_sync='vllm-dev' (a vLLM server in dev mode) "
        "(or FakePolicy in tests)",
    ),
    TokenScorer: ("score tokens (prompt_logprobs)", "use vllm: or hf:"),
    ChatSampler: ("sample from chat messages", "use openai: (an OpenAI-compatible server)"),
}


def require_capability(policy: Any, capability: type, purpose: str = "") -> None:
    """Check that ``policy`` has ``capability`` (one of the Protocols of this module).

    Args:
        policy: any policy object.
        capability: :class:`WeightSync`, :class:`TokenScorer` or :class:`ChatSampler`
            (any runtime-checkable Protocol works; the message is then generic).
        purpose: what the caller needs it for, e.g. ``"on-policy training"``.

    Raises:
        CapabilityError: ``"policy X cannot take weight updates (needed for ...); use vllm:
            or hf:"``.
    """
    if isinstance(policy, capability):
        return
    name = getattr(capability, "__name__", str(capability))
    what, hint = _CAPABILITIES.get(capability, (f"provide {name}", f"use a policy with {name}"))
    needed = f" (needed for {purpose})" if purpose else ""
    raise CapabilityError(
        f"policy {type(policy).__name__} cannot {what}{needed}; {hint}"
    )
