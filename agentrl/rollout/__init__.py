"""Rollouts: run environments with a policy and record token-in-token-out trajectories."""

from agentrl.rollout.collector import EnvSource, collect, collect_sync, episode_plan
from agentrl.rollout.config import RolloutConfig
from agentrl.rollout.spec import EpisodeSpec, specs_for
from agentrl.rollout.stream import RolloutStream
from agentrl.rollout.tito import EnvDelta, ModelTurn, TokenConversation, render_chat

__all__ = [
    "EnvDelta",
    "EnvSource",
    "EpisodeSpec",
    "ModelTurn",
    "RolloutConfig",
    "RolloutStream",
    "TokenConversation",
    "collect",
    "collect_sync",
    "episode_plan",
    "render_chat",
    "specs_for",
]
