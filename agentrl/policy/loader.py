"""``load_policy("vllm:PATH" | "openai:URL[#model]" | "hf:PATH")``: one string picks a backend."""

from __future__ import annotations

import dataclasses
from typing import Any

from agentrl.errors import ConfigError
from agentrl.policy.base import Policy

__all__ = ["SCHEMES", "load_policy"]

#: Accepted spec forms, for error messages and ``--help`` texts.
SCHEMES: dict[str, str] = {
    "vllm": "vllm:PATH  in-process vLLM engine (PATH: folder, hub id, or 'tiny')",
    "openai": "openai:URL[#model]  OpenAI-compatible server, e.g. openai:http://127.0.0.1:8000#my-model",
    "hf": "hf:PATH  transformers generate (PATH: folder, hub id, or 'tiny')",
}


def load_policy(spec: str, **kw: Any) -> Policy:
    """Build a policy from a spec string.

    Args:
        spec: ``vllm:PATH``, ``openai:URL[#model]`` or ``hf:PATH``; PATH ``tiny`` is the
            built-in tiny chat model (built on first use).
        **kw: Backend settings, passed to :class:`VLLMConfig`, :class:`OpenAIConfig` or
            :class:`HFConfig` (e.g. ``kv_cache_gib=1``, ``max_concurrency=8``). For
            ``openai:``, ``weight_sync="vllm-dev"`` gives a :class:`VLLMServerPolicy` (a vLLM
            server on this machine started with ``VLLM_SERVER_DEV_MODE=1``; takes weight
            updates; settings of :class:`VLLMServerConfig`).

    Raises:
        ConfigError: unknown scheme, empty target, or a setting the backend does not have.
        PolicyNotFoundError: PATH does not exist.
    """
    if not isinstance(spec, str):
        raise ConfigError(f"a policy spec is a string such as 'hf:tiny', got {type(spec).__name__}")
    scheme, sep, target = spec.partition(":")
    if not sep or scheme not in SCHEMES:
        valid = "\n  ".join(SCHEMES.values())
        raise ConfigError(f"unknown policy spec {spec!r}; valid forms:\n  {valid}")
    if not target:
        raise ConfigError(
            f"policy spec {spec!r} has nothing after '{scheme}:'; expected {SCHEMES[scheme]}"
        )
    if scheme == "vllm":
        from agentrl.policy.vllm_engine import VLLMConfig, VLLMPolicy

        _check_settings(spec, VLLMConfig, kw)
        return VLLMPolicy(target, **kw)
    if scheme == "hf":
        from agentrl.policy.hf import HFConfig, HFPolicy

        _check_settings(spec, HFConfig, kw)
        return HFPolicy(target, **kw)
    from agentrl.policy.openai_http import OpenAIConfig, OpenAIPolicy

    url, _, model = target.partition("#")
    if model:
        if "model" in kw:
            raise ConfigError(
                f"model given twice: in the spec ({model!r}) and as model={kw['model']!r}"
            )
        kw["model"] = model
    sync = kw.pop("weight_sync", None)
    if sync is None:
        _check_settings(spec, OpenAIConfig, kw)
        return OpenAIPolicy(url, **kw)
    if sync != "vllm-dev":
        raise ConfigError(f"weight_sync must be None or 'vllm-dev', got {sync!r}")
    from agentrl.policy.vllm_server import VLLMServerConfig, VLLMServerPolicy

    _check_settings(spec, VLLMServerConfig, kw)
    return VLLMServerPolicy(url, **kw)


def _check_settings(spec: str, config: type, kw: dict[str, Any]) -> None:
    """Refuse settings the backend's config does not have (ConfigError, not TypeError)."""
    names = [f.name for f in dataclasses.fields(config)]
    unknown = sorted(set(kw) - set(names) - {"config"})  # config=: a whole config object
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)} for policy {spec!r}; "
            f"{config.__name__} takes: {', '.join(names)}"
        )
