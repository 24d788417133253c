"""A tiny chat model built locally: byte-level BPE tokenizer, ChatML template, Qwen2 weights.

No model hub is reachable on the machines this project is developed on, so tests,
benchmarks and the default training run use a model the project builds itself. The
result is an ordinary Hugging Face checkpoint folder: everything downstream loads it with
``from_pretrained`` (transformers) or as ``--model PATH`` (vLLM), exactly like a hub id.

The weights are random (fixed seed); the model does not know anything. It exists so that
every code path (tokenization, chat template, generation, logprobs, weight sync) runs
for real and fast.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agentrl.errors import ConfigError

__all__ = [
    "TinyModelConfig",
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "build_tiny_chat_model",
    "default_tiny_model_path",
    "tiny_corpus",
]

#: Control tokens: never produced by tokenizing ordinary text, removed when decoding
#: with ``skip_special_tokens``.
SPECIAL_TOKENS: tuple[str, ...] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>")
#: Added tokens that stay in decoded text (a parser must see them), as in Qwen2.5.
TEXT_TOKENS: tuple[str, ...] = (
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
)

# Qwen2.5-style ChatML with tools. It is prefix-preserving on purpose: assistant content is
# emitted verbatim (no strip, no think-removal), so for any conversation
#   render(msgs + [assistant(X)] + more) ==
#   render(msgs, add_generation_prompt=True) + X + "<|im_end|>\n" + <rest>
# which token-in-token-out rollouts rely on. Consecutive ``tool`` messages share one
# ``user`` turn, each wrapped in <tool_response> tags. See docs/policy.md.
CHAT_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages and messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}"
    "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\\n</tool_call><|im_end|>\\n\' }}'
    "{%- elif messages and messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'system' and loop.first %}"
    "{%- elif message.role == 'user' or message.role == 'system' %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if message.content %}{{- message.content }}{%- endif %}"
    "{%- for tool_call in message.tool_calls or [] %}"
    "{%- if message.content or not loop.first %}{{- '\\n' }}{%- endif %}"
    "{%- if tool_call.function %}{%- set tool_call = tool_call.function %}{%- endif %}"
    '{{- \'<tool_call>\\n{"name": "\' + tool_call.name + \'", "arguments": \' }}'
    "{%- if tool_call.arguments is string %}{{- tool_call.arguments }}"
    "{%- else %}{{- tool_call.arguments | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class TinyModelConfig:
    """Sizes of the tiny Qwen2 model (kept to what the CPU build of vLLM accepts)."""

    vocab_size: int = 1024
    """Target BPE vocabulary size, special tokens included."""
    hidden_size: int = 64
    """Model width."""
    num_attention_heads: int = 2
    """Query heads; ``hidden_size / num_attention_heads`` is the head dim (32 or 64 on CPU vLLM)."""
    num_key_value_heads: int = 2
    """Key/value heads (grouped-query attention when fewer than the query heads)."""
    intermediate_size: int = 192
    """MLP width."""
    num_hidden_layers: int = 2
    """Transformer blocks."""
    max_position_embeddings: int = 4096
    """Context length."""
    initializer_range: float = 0.05
    """Std of the random init; above the usual 0.02 so that distributions are not flat."""

    def __post_init__(self) -> None:
        if self.vocab_size < 300:
            raise ConfigError(
                f"vocab_size must be >= 300 (256 bytes + specials), got {self.vocab_size}"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError("hidden_size must be divisible by num_attention_heads")
        if self.hidden_size // self.num_attention_heads not in (32, 64, 128):
            raise ConfigError(
                "head dim (hidden_size / num_attention_heads) must be 32, 64 or 128: the CPU "
                f"build of vLLM rejects other sizes; got {self.hidden_size // self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError("num_attention_heads must be a multiple of num_key_value_heads")
        if min(self.intermediate_size, self.num_hidden_layers, self.max_position_embeddings) < 1:
            raise ConfigError(
                "intermediate_size, num_hidden_layers, max_position_embeddings must be >= 1"
            )


# ----------------------------------------------------------------------------- corpus

_NAMES = ["Ada", "Bo", "Cy", "Dee", "Eve", "Finn", "Gus", "Hana"]
_TOPICS = ["the weather", "a number", "python code", "the answer", "a plan", "the file"]
_WORDS = (
    "about above after again agent answer argument array assistant because before below "
    "between bottom build call calculator cannot careful change check choose class close code "
    "compute correct count create data debug default define delete describe different divide "
    "done double error evaluate every example expression false field file final find first "
    "float follow function game given good great guess happy health higher history import "
    "input integer inside install item json keep known large later learn least length letter "
    "light limit line list little local lower maybe message method middle minus model module "
    "multiply name never next none number object observation order output parameter parse "
    "please plus point policy print problem program python query question random range read "
    "reason receive record reply request result return reward right round sandbox search "
    "second secret select send shell should simple small solve sorry square start state step "
    "string subtract success system table task test thank there think tool total train true "
    "try tuple turn type under until update user value variable very weather which while "
    "window world would write wrong yes"
).split()


def tiny_corpus() -> list[str]:
    """A few KB of text generated in code: chat turns, arithmetic, JSON tool calls, python.

    Fixed (independent of the model seed), so every tiny model shares one tokenizer.
    """
    rng = random.Random(1234)
    docs: list[str] = []
    for _ in range(60):
        a, b = rng.randint(0, 999), rng.randint(1, 99)
        op = rng.choice(["+", "-", "*", "/"])
        expr = f"{a} {op} {b}"
        value = eval(expr)  # noqa: S307 - our own literal arithmetic
        name, topic = rng.choice(_NAMES), rng.choice(_TOPICS)
        call = json.dumps({"name": "calculator", "arguments": {"expression": expr}})
        docs.append(
            f"<|im_start|>user\nHi, I am {name}. What is {expr}? Tell me about {topic}.<|im_end|>\n"
            f"<|im_start|>assistant\nLet me compute it.\n<tool_call>\n{call}\n</tool_call><|im_end|>\n"
            f"<|im_start|>user\n<tool_response>\n{value}\n</tool_response><|im_end|>\n"
            f"<|im_start|>assistant\nThe answer is {value}. Guess: {rng.randint(1, 100)} is higher "
            f"or lower?<|im_end|>\n"
        )
        docs.append(
            f'def f_{a}(x: int) -> int:\n    """Return x {op} {b}."""\n'
            f"    return x {op} {b}\n\nprint(f_{a}({a}))  # {value}\n"
        )
        docs.append(
            json.dumps(
                {
                    "type": "function",
                    "function": {
                        "name": rng.choice(["calculator", "python", "search", "guess"]),
                        "description": f"Answer questions about {topic}.",
                        "parameters": {
                            "type": "object",
                            "properties": {"query": {"type": "string"}},
                            "required": ["query"],
                        },
                    },
                }
            )
        )
    for _ in range(300):
        words = rng.sample(_WORDS, rng.randint(6, 14))
        docs.append(" ".join(words).capitalize() + rng.choice([".", "?", "!", ":"]))
    return docs


# ----------------------------------------------------------------------------- build

# Qwen2's pre-tokenization split (a fact about the format; see transformers' Qwen2Tokenizer).
_QWEN2_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def _train_tokenizer(config: TinyModelConfig):  # -> PreTrainedTokenizerFast
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    # Exactly Qwen2's pipeline: transformers rebuilds a ``qwen2`` model's tokenizer with it
    # (AutoTokenizer -> Qwen2Tokenizer), so training with anything else would make the
    # loaded tokenizer disagree with the trained one.
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size - len(TEXT_TOKENS),
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tiny_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
        bos_token=None,
        additional_special_tokens=["<|im_start|>", "<|endoftext|>"],
        clean_up_tokenization_spaces=False,  # decode must give back the exact text
        model_max_length=config.max_position_embeddings,
        chat_template=CHAT_TEMPLATE,
    )
    fast.add_tokens(list(TEXT_TOKENS), special_tokens=False)
    return fast


def build_tiny_chat_model(
    path: str | os.PathLike[str], *, seed: int = 0, config: TinyModelConfig | None = None
) -> Path:
    """Build the tiny chat model into ``path`` (created; existing files are overwritten).

    Args:
        path: Output folder; afterwards it holds ``config.json``, ``model.safetensors``,
            ``generation_config.json`` and the tokenizer files.
        seed: Seed of the random weight init. The same seed gives identical files.
        config: Model sizes; defaults to :class:`TinyModelConfig()`.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    config = config or TinyModelConfig()
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(config)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    endoftext = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    model_config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        max_position_embeddings=config.max_position_embeddings,
        initializer_range=config.initializer_range,
        tie_word_embeddings=True,
        bos_token_id=endoftext,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    # Fork the RNG so building a model does not disturb the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(model_config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=[eos, endoftext], pad_token_id=tokenizer.pad_token_id, bos_token_id=endoftext
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def default_tiny_model_path() -> Path:
    """The shared tiny model, built on first use.

    Lives in ``$AGENTRL_CACHE/tiny-chat-v1`` (default ``~/.cache/agentrl/tiny-chat-v1``).
    The build goes to a temporary sibling folder first and is renamed into place, so a
    crash or a concurrent build never leaves a half-written model behind.
    """
    root = Path(os.environ.get("AGENTRL_CACHE", Path.home() / ".cache" / "agentrl"))
    target = root / "tiny-chat-v1"
    if (target / "model.safetensors").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-chat-v1-", dir=root))
    build_tiny_chat_model(tmp, seed=0)
    try:
        tmp.rename(target)
    except OSError:  # another process won the race: keep its copy
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return target
