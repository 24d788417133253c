"""Token-in-token-out conversations: model tokens kept as generated, env messages appended.

A :class:`TokenConversation` holds a chat conversation as token ids. The prompt is the
chat template's render of the env's first messages (with the generation prompt); after
that it grows by two operations:

* :meth:`TokenConversation.add_model_turn` appends the model's tokens exactly as
  sampled, then the template's closing text of the assistant turn that the model did not
  generate itself (``"\\n"`` after ``<|im_end|>`` in ChatML, or ``<|im_end|>\\n`` when the
  model hit its token limit), as non-model tokens;
* :meth:`TokenConversation.env_delta` / :meth:`TokenConversation.append_env` tokenize
  only the *new* environment messages: the text by which the render of the conversation
  with them (and the next generation prompt) extends the render without them.

Every step is checked: the template must be *prefix-preserving* (rendering a longer
conversation must start with the text already rendered; :meth:`TokenConversation.verify`
checks a conversation that ends with a model turn). When it does not (a template
that drops earlier reasoning, rewrites assistant content, or whose generation prompt is
not how it renders history) a :class:`~agentrl.errors.ChatTemplateError` says so; the
conversation is never silently re-tokenized.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentrl.errors import ChatTemplateError, PolicyError

__all__ = ["EnvDelta", "ModelTurn", "TokenConversation", "render_chat"]

_SHOW = 120  # characters of text quoted in error messages


def _clip(text: str) -> str:
    return repr(text if len(text) <= _SHOW else text[:_SHOW] + "...")


def _fast_backend(tokenizer: Any) -> Any:
    """The Rust ``tokenizers.Tokenizer`` behind a fast HF tokenizer, or None.

    ``tokenizer.encode`` goes through ``encode_batch``, which releases the GIL: with the
    vLLM output thread busy, the caller then waits up to a whole switch interval (5 ms)
    to get it back, per call. The backend's single ``encode`` keeps the GIL and gives the
    same ids (the HF wrapper only batches it), unless special tokens are split as text.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or getattr(tokenizer, "split_special_tokens", False):
        return None
    return backend if callable(getattr(backend, "encode", None)) else None


def render_chat(
    tokenizer: Any, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool
) -> str:
    """Render ``messages`` with the tokenizer's chat template, as text.

    Environments put their tool schemas into the system prompt text themselves, so no
    ``tools=`` argument is passed to the template.
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise ChatTemplateError(
            f"tokenizer {type(tokenizer).__name__} has no chat template; set "
            "tokenizer.chat_template (a Jinja string) or use a chat model's tokenizer"
        )
    text = tokenizer.apply_chat_template(
        [dict(m) for m in messages],
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
    )
    if not isinstance(text, str):  # some tokenizers return a list for batched input
        raise ChatTemplateError(f"chat template rendered {type(text).__name__}, expected str")
    return text


@dataclass(frozen=True)
class ModelTurn:
    """What :meth:`TokenConversation.add_model_turn` appended."""

    start: int
    """Index of the turn's first model token."""
    end: int
    """One past its last model token."""
    content: str
    """The assistant message text (model tokens decoded, trailing special tokens dropped)."""
    closing_ids: tuple[int, ...]
    """Template tokens appended after the model's tokens to close the turn (not model tokens)."""


@dataclass(frozen=True)
class EnvDelta:
    """Tokens of new environment messages, computed but not yet appended."""

    messages: tuple[dict[str, Any], ...]
    """The new messages."""
    text: str
    """Rendered text they add (including the next generation prompt if asked for)."""
    token_ids: tuple[int, ...]
    """That text as token ids."""
    add_generation_prompt: bool
    """Whether the text ends with the generation prompt of the next assistant turn."""
    base_len: int
    """Length of the rendered text it extends (guards against a stale delta)."""


class TokenConversation:
    """A chat conversation stored as token ids, grown token-in-token-out.

    Args:
        tokenizer: a ``transformers`` tokenizer with a chat template.
        messages: the env's first messages (system prompt with tools, task).

    Attributes:
        token_ids: every token so far (prompt, model turns, env messages).
        loss_mask: 1 on model tokens, 0 elsewhere.
        logprobs: sampling logprob of each model token, 0.0 elsewhere.
        prompt_len: number of tokens of the initial prompt.
        messages: the conversation as chat messages.

    Cost: one render of the conversation per turn. How the template closes an assistant
    turn is found once (a probe render with placeholder content); a model turn is then
    appended without rendering, and checked by the next :meth:`env_delta` render (whose
    prefix must be exactly the text so far) or by :meth:`verify` when no env message
    follows. Templates the probe does not fit are checked at every model turn.
    """

    def __init__(self, tokenizer: Any, messages: Sequence[Mapping[str, Any]]) -> None:
        if not messages:
            raise ChatTemplateError("a conversation needs at least one initial message")
        self.tokenizer = tokenizer
        self._backend = _fast_backend(tokenizer)
        self.messages: list[dict[str, Any]] = [dict(m) for m in messages]
        self._text = render_chat(tokenizer, self.messages, add_generation_prompt=True)
        ids = self._encode(self._text)
        self.token_ids: list[int] = ids
        self.loss_mask: list[int] = [0] * len(ids)
        self.logprobs: list[float] = [0.0] * len(ids)
        self.prompt_len = len(ids)
        self._awaiting_model = True  # the text ends with a generation prompt
        self._special = set(getattr(tokenizer, "all_special_ids", []) or [])
        self._closing = self._probe_closing()
        self._closing_ids: dict[str, list[int]] = {}
        # (text before, content) of a model turn not yet checked against a render.
        self._unchecked: tuple[str, str] | None = None

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def awaiting_model(self) -> bool:
        """True when the conversation ends with a generation prompt (the model's turn)."""
        return self._awaiting_model

    # -- tokenizer helpers ------------------------------------------------------------
    def _encode(self, text: str) -> list[int]:
        # The template writes special tokens (BOS, <|im_start|>) itself: add none.
        if self._backend is not None:
            return self._backend.encode(text, add_special_tokens=False).ids
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(
            list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False
        )

    def _probe_closing(self) -> str | None:
        """Text the template writes after an assistant message's content, or None if unclear."""
        probe = "agentrl-probe-\u2063-content"
        messages = [*self.messages, {"role": "assistant", "content": probe}]
        full = render_chat(self.tokenizer, messages, add_generation_prompt=False)
        head = self._text + probe
        return full[len(head):] if full.startswith(head) else None

    def closing_length(self) -> int:
        """Tokens the template adds to close an assistant turn that the model did not end.

        The collector keeps this much room below ``max_context`` so that a turn cut by
        the token limit can still be closed (e.g. ``<|im_end|>\\n`` in ChatML).
        """
        if self._closing is not None:
            return len(self._encode(self._closing))
        messages = [*self.messages, {"role": "assistant", "content": ""}]
        full = render_chat(self.tokenizer, messages, add_generation_prompt=False)
        return len(self._encode(full[len(self._text):] if full.startswith(self._text) else full))

    # -- the model's turn ---------------------------------------------------------------
    def add_model_turn(self, token_ids: Sequence[int], logprobs: Sequence[float]) -> ModelTurn:
        """Append the model's tokens as generated, then close the assistant turn.

        ``token_ids`` are the sampled ids (ending with the end-of-turn token when the
        model stopped by itself). The assistant message text is their decoding with
        trailing special tokens removed. Whatever the template renders after that text
        to end the turn, beyond what the model generated, is appended with mask 0. If
        the model stopped on another special token (``<|endoftext|>`` under ChatML), that
        token is kept and followed by the template's full closing text.

        Raises:
            ChatTemplateError: the template does not render the assistant turn as the
                generation prompt followed by the model's text (found here, or by the
                next :meth:`env_delta` / :meth:`verify`).
            PolicyError: ``token_ids`` and ``logprobs`` differ in length.
        """
        if not self._awaiting_model:
            raise ChatTemplateError(
                "add_model_turn called but the conversation does not end with a "
                "generation prompt; add env messages with add_generation_prompt=True first"
            )
        if len(token_ids) != len(logprobs):
            raise PolicyError(
                f"got {len(token_ids)} token ids but {len(logprobs)} logprobs for a model turn"
            )
        ids = [int(t) for t in token_ids]
        n_content = len(ids)
        while n_content and ids[n_content - 1] in self._special:
            n_content -= 1
        content = self._decode(ids[:n_content])
        stop_text = self._decode(ids[n_content:])  # "<|im_end|>" when the model ended the turn
        messages = [*self.messages, {"role": "assistant", "content": content}]
        if self._closing is not None:
            full = self._text + content + self._closing
            self._unchecked = (self._text, content)
        else:
            full = render_chat(self.tokenizer, messages, add_generation_prompt=False)
            self._check_turn(full, self._text, content)
        closing_text = full[len(self._text) + len(content):]
        if closing_text.startswith(stop_text):
            closing_text = closing_text[len(stop_text):]
        # Otherwise the model stopped on a token the template does not close turns with
        # (e.g. <|endoftext|> where ChatML writes <|im_end|>): that sampled token stays a
        # model token, and the turn is closed the template's way after it.
        if closing_text not in self._closing_ids:
            self._closing_ids[closing_text] = self._encode(closing_text) if closing_text else []
        closing = self._closing_ids[closing_text]
        start = len(self.token_ids)
        self.token_ids += ids
        self.loss_mask += [1] * len(ids)
        self.logprobs += [float(x) for x in logprobs]
        end = len(self.token_ids)
        self.token_ids += closing
        self.loss_mask += [0] * len(closing)
        self.logprobs += [0.0] * len(closing)
        self.messages = messages
        self._text = full
        self._awaiting_model = False
        return ModelTurn(start=start, end=end, content=content, closing_ids=tuple(closing))

    @staticmethod
    def _check_turn(full: str, before: str, content: str) -> None:
        """Raise if ``full`` (history + assistant reply) is not ``before + content + ...``."""
        if not full.startswith(before):
            raise ChatTemplateError(
                "chat template is not prefix-preserving: the conversation rendered with the "
                "assistant's reply does not start with the prompt it was generated from "
                "(the generation prompt differs from how the template renders an assistant "
                f"turn, or earlier turns change).\n  prompt ends: {_clip(before[-_SHOW:])}\n"
                f"  render has:  {_clip(full[max(0, len(before) - _SHOW):])}\n"
                "Use a template whose generation prompt starts the assistant turn as it "
                "is rendered in history (see docs/rollout.md)."
            )
        assistant_part = full[len(before):]
        if not assistant_part.startswith(content):
            raise ChatTemplateError(
                "chat template is not prefix-preserving: it renders the assistant turn as "
                f"{_clip(assistant_part)} but the model generated {_clip(content)}; "
                "the template rewrites assistant content (strips whitespace or reasoning, "
                "reformats tool calls), so a fresh render would differ from the generated "
                "tokens. Use a template that renders assistant content verbatim."
            )

    def _diagnose_unchecked(self) -> None:
        """Explain a mismatch by rendering the last model turn alone (raises if it is the cause)."""
        if self._unchecked is None:
            return
        before, content = self._unchecked
        full = render_chat(self.tokenizer, self.messages, add_generation_prompt=False)
        self._check_turn(full, before, content)
        if full != self._text:
            raise ChatTemplateError(
                "chat template is not prefix-preserving: it closes the assistant turn "
                f"{_clip(full[len(before) + len(content):])} for this reply, but "
                f"{_clip(self._closing or '')} for other content; use a template whose turn "
                "ending does not depend on the content."
            )

    def verify(self) -> None:
        """Check the last model turn against a fresh render (when no env message followed it).

        Raises:
            ChatTemplateError: the rendered conversation differs from the text so far.
        """
        if self._unchecked is not None:
            self._diagnose_unchecked()
            self._unchecked = None

    # -- the env's messages -------------------------------------------------------------
    def env_delta(
        self, new_messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = True
    ) -> EnvDelta:
        """Tokens that ``new_messages`` (and the next generation prompt) add; nothing is appended.

        Raises:
            ChatTemplateError: rendering the conversation with the new messages does not
                start with the text rendered so far.
        """
        if self._awaiting_model:
            raise ChatTemplateError(
                "env messages can only follow a model turn (the conversation already ends "
                "with a generation prompt)"
            )
        new = tuple(dict(m) for m in new_messages)
        full = render_chat(
            self.tokenizer, [*self.messages, *new], add_generation_prompt=add_generation_prompt
        )
        if not full.startswith(self._text):
            self._diagnose_unchecked()
            cut = len(self._text)
            i = next((k for k in range(cut) if k >= len(full) or full[k] != self._text[k]), cut)
            raise ChatTemplateError(
                "chat template is not prefix-preserving: adding the env's messages changes "
                f"how earlier turns render (first difference at character {i}: had "
                f"{_clip(self._text[i:i + _SHOW])}, now {_clip(full[i:i + _SHOW])}). "
                "Templates that drop earlier reasoning or rewrite history cannot be used "
                "token-in-token-out; use one that renders each message independently."
            )
        text = full[len(self._text):]
        ids = self._encode(text) if text else []
        return EnvDelta(new, text, tuple(ids), add_generation_prompt, len(self._text))

    def append_env(self, delta: EnvDelta) -> None:
        """Append a delta from :meth:`env_delta` (computed on the current conversation)."""
        if self._awaiting_model or delta.base_len != len(self._text):
            raise ChatTemplateError("stale EnvDelta: the conversation changed since it was computed")
        self.token_ids += delta.token_ids
        self.loss_mask += [0] * len(delta.token_ids)
        self.logprobs += [0.0] * len(delta.token_ids)
        self.messages += [dict(m) for m in delta.messages]
        self._text += delta.text
        self._awaiting_model = delta.add_generation_prompt
        self._unchecked = None  # the delta's render started with the whole text so far

    def add_env_messages(
        self, new_messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = True
    ) -> EnvDelta:
        """:meth:`env_delta` then :meth:`append_env`; returns the appended delta."""
        delta = self.env_delta(new_messages, add_generation_prompt=add_generation_prompt)
        self.append_env(delta)
        return delta
