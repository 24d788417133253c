"""agentrl: multi-turn agent RL with Gymnasium tool environments.

Importing the package registers the built-in environments in gymnasium's registry, so
``gymnasium.make("agentrl/Calculator-v0")`` works after ``import agentrl``, and
``gymnasium.make("agentrl:agentrl/Calculator-v0")`` works with no import at all.
"""

from agentrl import envs as _builtin_envs  # noqa: F401  (registers the built-in ids)
from agentrl.env import AgentEnv, Task, ToolEnv
from agentrl.errors import AgentRLError
from agentrl.registry import list_envs, make, register_env
from agentrl.tool import Tool, ToolError, tool
from agentrl.trajectory import Trajectory, Turn

__version__ = "0.1.0"

__all__ = [
    "AgentEnv",
    "AgentRLError",
    "EpisodeSpec",
    "Task",
    "Tool",
    "ToolEnv",
    "ToolError",
    "Trajectory",
    "Turn",
    "list_envs",
    "make",
    "register_env",
    "tool",
    "__version__",
]


def __getattr__(name: str) -> object:
    # EpisodeSpec is imported on first use: agentrl.rollout pulls in the policy backends.
    if name == "EpisodeSpec":
        from agentrl.rollout.spec import EpisodeSpec

        return EpisodeSpec
    raise AttributeError(f"module 'agentrl' has no attribute {name!r}")
