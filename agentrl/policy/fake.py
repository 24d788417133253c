"""A scripted policy for fast tests of other components. Not a model: replies are given."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from agentrl.errors import ConfigError, PolicyError
from agentrl.policy._common import check_prompt, room_for
from agentrl.policy.base import Generation, Policy, SamplingParams

__all__ = ["FakePolicy"]

#: The logprob every fake token gets (made up; only its shape is meaningful).
FAKE_LOGPROB = -0.5


class FakePolicy(Policy):
    """Answers with scripted texts, tokenized by a real tokenizer. A FAKE, for tests.

    Args:
        tokenizer: A transformers tokenizer (its chat template is used by the collector).
        replies: Reply texts used in order (``cycle=True`` repeats them), or a callable
            ``(prompt_text) -> reply`` that sees the decoded prompt.
        cycle: Repeat the list of replies instead of raising when it runs out.
        delay_s: Seconds each call sleeps (``asyncio.sleep``), to imitate latency.
        max_model_len: Context window to imitate: longer prompts raise
            :class:`PromptTooLongError` and completions are cut at the window (``length``).

    Each reply becomes ``tokenizer.encode(reply) + [eos]`` with finish reason ``stop``,
    or is cut to ``max_tokens`` (``length``) or after a stop string (``stop``, EOS not
    appended). Every logprob is :data:`FAKE_LOGPROB`. ``calls`` records each prompt's ids.

    It takes weight updates (:class:`~agentrl.policy.base.WeightSync`) without using them:
    ``update_weights`` stores the weights in ``weights`` and bumps ``weight_version``,
    which every generation records, so trainers can be tested with no model.
    """

    def __init__(
        self,
        tokenizer: Any,
        replies: Iterable[str] | Callable[[str], str],
        *,
        cycle: bool = False,
        delay_s: float = 0.0,
        max_model_len: int | None = None,
    ) -> None:
        if delay_s < 0:
            raise ConfigError(f"delay_s must be >= 0, got {delay_s}")
        if tokenizer.eos_token_id is None:
            raise ConfigError("FakePolicy needs a tokenizer with an eos_token")
        self.tokenizer = tokenizer
        self.delay_s = delay_s
        self.max_model_len = max_model_len
        self.calls: list[list[int]] = []
        self.weight_version = 0
        self.weights: Any = None
        if callable(replies):
            self._reply: Callable[[str], str] = replies
        else:
            texts = list(replies)
            if not texts:
                raise ConfigError("replies is empty: give at least one reply text")
            it = itertools.cycle(texts) if cycle else iter(texts)

            def next_reply(_: str) -> str:
                try:
                    return next(it)
                except StopIteration:
                    raise PolicyError(
                        f"FakePolicy ran out of its {len(texts)} scripted replies (pass cycle=True to repeat)"
                    ) from None

            self._reply = next_reply

    async def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> list[Generation]:
        """Return ``params.n`` scripted replies (see the class docstring)."""
        ids = check_prompt(
            prompt_ids, vocab_size=len(self.tokenizer), max_model_len=self.max_model_len
        )
        self.calls.append(ids)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        prompt_text = self.tokenizer.decode(ids, skip_special_tokens=False)
        max_tokens = room_for(len(ids), params.max_tokens, self.max_model_len)
        return [self._one(self._reply(prompt_text), params, max_tokens) for _ in range(params.n)]

    def update_weights(
        self, weights: Any, *, verify: bool = True, atol: float | None = None
    ) -> float | None:
        """Store ``weights`` (not used for replies) and bump :attr:`weight_version`.

        Returns 0.0 when ``verify`` (nothing to compare: the replies are scripted), else None.
        """
        if weights is None:
            raise ConfigError("weights is None: pass a state dict or a torch.nn.Module")
        self.weights = weights
        self.weight_version += 1
        return 0.0 if verify else None

    async def aupdate_weights(
        self, weights: Any, *, verify: bool = True, atol: float | None = None
    ) -> float | None:
        """:meth:`update_weights` (nothing to wait for)."""
        return self.update_weights(weights, verify=verify, atol=atol)

    def _one(self, reply: str, params: SamplingParams, max_tokens: int) -> Generation:
        if not isinstance(reply, str):
            raise PolicyError(f"FakePolicy reply must be a str, got {type(reply).__name__}")
        toks = self.tokenizer.encode(reply, add_special_tokens=False) + [
            self.tokenizer.eos_token_id
        ]
        reason, stop_hit = "stop", None
        if params.stop:  # cut after the first token that completes a stop string
            for k in range(1, len(toks)):
                text = self.tokenizer.decode(toks[:k], skip_special_tokens=True)
                stop_hit = next((s for s in params.stop if s in text), None)
                if stop_hit is not None:
                    toks = toks[:k]
                    break
        if len(toks) > max_tokens:
            toks, reason, stop_hit = toks[:max_tokens], "length", None
        text = self.tokenizer.decode(toks, skip_special_tokens=True)
        meta: dict[str, Any] = {"fake": True}
        if stop_hit is not None:
            meta["stop_reason"] = stop_hit
        return Generation(toks, text, [FAKE_LOGPROB] * len(toks), reason, meta,
                          weight_version=self.weight_version)
