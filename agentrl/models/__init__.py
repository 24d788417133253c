"""Models the project builds itself (no model hub needed)."""

from agentrl.models.tiny import (
    CHAT_TEMPLATE,
    TinyModelConfig,
    build_tiny_chat_model,
    default_tiny_model_path,
)

__all__ = ["CHAT_TEMPLATE", "TinyModelConfig", "build_tiny_chat_model", "default_tiny_model_path"]
