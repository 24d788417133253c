"""Settings of ``agentrl serve`` (one server process)."""

from __future__ import annotations

from dataclasses import dataclass

from agentrl.errors import ConfigError

__all__ = ["ServerConfig"]


@dataclass(frozen=True)
class ServerConfig:
    """Settings of one ``agentrl serve`` process."""

    env_ids: tuple[str, ...]
    """The registered env ids this server makes sessions of."""
    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = 8765
    """TCP port (0: any free port)."""
    max_sessions: int = 4096
    """Most sessions open at once; a create beyond it gets 429 with Retry-After."""
    idle_timeout_s: float = 300.0
    """A session with no operation for this long is closed (its env too)."""
    token: str | None = None
    """Bearer token every request must carry (``Authorization: Bearer TOKEN``); None: open."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Largest request body / WebSocket frame accepted (413 beyond)."""
    allow_env_kwargs: bool = False
    """Accept ``env_kwargs`` (constructor arguments) from clients; refused (403) if False."""
    env_threads: int = 0
    """Threads that run sync envs' reset/step (0: run them on the event loop, fastest for
    pure-Python envs; use threads for envs that block, e.g. sandboxes)."""

    def __post_init__(self) -> None:
        if not self.env_ids:
            raise ConfigError("serve: give at least one env id")
        if self.max_sessions < 1:
            raise ConfigError(f"max_sessions must be >= 1, got {self.max_sessions}")
        if not self.idle_timeout_s > 0:
            raise ConfigError(f"idle_timeout_s must be > 0, got {self.idle_timeout_s}")
        if self.max_body_bytes < 1024:
            raise ConfigError(f"max_body_bytes must be >= 1024, got {self.max_body_bytes}")
        if self.env_threads < 0:
            raise ConfigError(f"env_threads must be >= 0, got {self.env_threads}")
        if self.token is not None and not self.token:
            raise ConfigError("token must be a non-empty string or None")
