"""Policies: token ids in, token ids + text + logprobs out.

Backends: :class:`VLLMPolicy` (in-process vLLM engine), :class:`OpenAIPolicy` (any
OpenAI-compatible server over httpx), :class:`HFPolicy` (transformers ``generate``), and
:class:`FakePolicy` (scripted replies, for tests); :class:`VLLMServerPolicy` is an
OpenAIPolicy on a vLLM server in dev mode that takes weight updates. :func:`load_policy`
builds one from a ``vllm:PATH`` / ``openai:URL[#model]`` / ``hf:PATH`` string. Heavy libraries (vLLM,
transformers models) are imported only when a backend is created. Capabilities only some
backends have are Protocols (:class:`WeightSync`, :class:`TokenScorer`,
:class:`ChatSampler`), checked with :func:`require_capability`.
"""

from agentrl.policy.base import (
    ChatSampler,
    Generation,
    Policy,
    SamplingParams,
    TokenScorer,
    WeightSync,
    require_capability,
)
from agentrl.policy.fake import FakePolicy
from agentrl.policy.hf import HFConfig, HFPolicy
from agentrl.policy.loader import SCHEMES, load_policy
from agentrl.policy.openai_http import OpenAIConfig, OpenAIPolicy
from agentrl.policy.vllm_engine import VLLMConfig, VLLMPolicy
from agentrl.policy.vllm_server import VLLMServerConfig, VLLMServerPolicy

__all__ = [
    "Generation",
    "Policy",
    "SamplingParams",
    "WeightSync",
    "TokenScorer",
    "ChatSampler",
    "require_capability",
    "FakePolicy",
    "HFConfig",
    "HFPolicy",
    "OpenAIConfig",
    "OpenAIPolicy",
    "VLLMConfig",
    "VLLMPolicy",
    "VLLMServerConfig",
    "VLLMServerPolicy",
    "SCHEMES",
    "load_policy",
]
