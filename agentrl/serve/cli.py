"""``agentrl serve ENV_ID[,ENV_ID...]``: registered envs behind a network API (uvicorn).

Also :class:`BackgroundServer`, the same server on a thread of the calling process (tests,
notebooks), and :func:`run_server` for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from agentrl.errors import ConfigError
from agentrl.serve.sessions import ServerConfig, SessionManager

__all__ = ["add_arguments", "main", "uvicorn_config", "run_server", "BackgroundServer"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("env_ids", metavar="ENV_ID[,ENV_ID...]",
                   help="registered env ids to serve, comma-separated (e.g. agentrl/Calculator-v0)")
    p.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0: any free)")
    p.add_argument("--max-sessions", type=int, default=4096,
                   help="most sessions open at once; more get 429 + Retry-After (default 4096)")
    p.add_argument("--idle-timeout", type=float, default=300.0,
                   help="seconds without an operation before a session is closed (default 300)")
    p.add_argument("--token", default=None,
                   help="bearer token required on every request (default: $AGENTRL_SERVE_TOKEN "
                   "if set, else none)")
    p.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024,
                   help="largest request body / WebSocket frame (default 4 MiB; 413 beyond)")
    p.add_argument("--allow-env-kwargs", action="store_true",
                   help="let clients pass env constructor arguments (env_kwargs)")
    p.add_argument("--env-threads", type=int, default=0,
                   help="threads for sync envs' reset/step (default 0: on the event loop; use "
                   "threads for envs that block, e.g. sandboxed ones)")


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    import agentrl  # noqa: F401  (registers the built-in ids)
    from agentrl.registry import make

    ids = tuple(i.strip() for i in args.env_ids.split(",") if i.strip())
    for env_id in ids:  # fail now, with the registry's suggestions, not at the first session
        make(env_id).close()
    return ServerConfig(
        env_ids=ids, host=args.host, port=args.port, max_sessions=args.max_sessions,
        idle_timeout_s=args.idle_timeout, token=args.token or os.environ.get("AGENTRL_SERVE_TOKEN"),
        max_body_bytes=args.max_body_bytes, allow_env_kwargs=args.allow_env_kwargs,
        env_threads=args.env_threads,
    )


def uvicorn_config(config: ServerConfig, manager: Any = None) -> Any:
    """The uvicorn settings: uvloop, httptools, websockets, quiet access log."""
    import uvicorn

    from agentrl.serve.app import create_app

    return uvicorn.Config(
        create_app(config, manager), host=config.host, port=config.port, loop="uvloop",
        http="httptools", ws="websockets-sansio", ws_max_size=config.max_body_bytes,
        ws_per_message_deflate=False, log_level="warning", access_log=False,
        backlog=4096, timeout_keep_alive=30, lifespan="on",
    )


def _bind(config: ServerConfig) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {config.host}:{config.port}: {exc}") from exc
    sock.listen(4096)  # connections queue from now on (before uvicorn accepts them)
    sock.set_inheritable(True)
    return sock


def run_server(config: ServerConfig, *, announce: bool = True) -> None:
    """Serve until interrupted (SIGINT/SIGTERM close every session)."""
    import uvicorn

    sock = _bind(config)
    host, port = sock.getsockname()[:2]
    if announce:
        print(f"agentrl serve: listening on http://{host}:{port} "
              f"(envs: {', '.join(config.env_ids)}; max sessions {config.max_sessions}; "
              f"idle timeout {config.idle_timeout_s:g} s; token "
              f"{'required' if config.token else 'off'})", flush=True)
    server = uvicorn.Server(uvicorn_config(config))
    server.run(sockets=[sock])


def main(args: argparse.Namespace) -> int:
    run_server(config_from_args(args))
    return 0


class BackgroundServer:
    """The server on a daemon thread of this process (its own uvloop loop).

    >>> with BackgroundServer(ServerConfig(env_ids=("agentrl/Calculator-v0",), port=0)) as s:
    ...     env = RemoteEnv(s.url, "agentrl/Calculator-v0")

    ``make_env(env_id, **kwargs)`` replaces ``agentrl.registry.make`` (tests, custom envs).
    """

    def __init__(self, config: ServerConfig, make_env: Callable[..., Any] | None = None) -> None:
        import uvicorn

        self.config = config
        self._sock = _bind(config)
        host, port = self._sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self.manager = SessionManager(config, make_env)
        """The server's session manager (its sessions, counters)."""
        self.server = uvicorn.Server(uvicorn_config(config, self.manager))
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._run, name="agentrl-serve", daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None
        """The server's event loop (set once started)."""

    def _run(self) -> None:
        import uvloop

        async def serve() -> None:
            self.loop = asyncio.get_running_loop()
            await self.server.serve(sockets=[self._sock])

        uvloop.run(serve())

    def start(self, timeout_s: float = 20.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(f"the env server did not start within {timeout_s:g} s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m agentrl.serve.cli")
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
