"""The policy contract: token ids (or messages) in, token ids, text and logprobs out.

Shaped like an httpx transport: one small abstract base with one method to implement
(:meth:`Policy.generate`), default implementations per backend, and a fake beside them.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agentrl.errors import ConfigError

__all__ = ["SamplingParams", "Generation", "Policy"]


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
