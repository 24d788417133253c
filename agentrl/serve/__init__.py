"""Environments as network services: ``agentrl serve`` (:mod:`agentrl.serve.app`, sessions in
:mod:`agentrl.serve.sessions`), the client side (:mod:`agentrl.serve.client`, used by
:class:`agentrl.remote.RemoteEnv`), and rollout workers on Ray (:mod:`agentrl.serve.ray_rollout`).

Submodules are imported on use (FastAPI, uvicorn and Ray load only when needed).
"""

__all__ = ["ServerConfig", "BackgroundServer"]


def __getattr__(name: str) -> object:
    if name == "ServerConfig":
        from agentrl.serve.config import ServerConfig

        return ServerConfig
    if name == "BackgroundServer":
        from agentrl.serve.cli import BackgroundServer

        return BackgroundServer
    raise AttributeError(f"module 'agentrl.serve' has no attribute {name!r}")
