"""Tools from an MCP server: a :class:`~agentrl.env.ToolEnv` can use any MCP tool server.

    server = MCPToolServer(["python", "my_server.py"])        # stdio: a command line
    server = MCPToolServer("http://127.0.0.1:8000/mcp")       # streamable HTTP: a URL
    env = MyEnv(tools=server.tools())                         # any ToolEnv
    ...
    server.close()

The server's tool list becomes :class:`~agentrl.tool.Tool` objects whose schemas are the
server's input schemas (name, description, JSON schema of the arguments). A call first
checks the arguments against the schema's top level (an object, the required keys, no
unknown keys when the schema forbids them, plain JSON types), then goes to the server.
A tool error (a result with ``isError``, or an MCP error response such as invalid
parameters) comes back to the agent as a tool message, like any :class:`ToolError`. A
server that cannot be started or whose connection breaks raises
:class:`~agentrl.errors.ToolServerError`.

The connection lives on a background event loop (the ``mcp`` SDK is async), so tools are
called from ordinary synchronous env code. One :class:`MCPToolServer` serves one env at a
time; calls are serialized.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from agentrl.errors import ConfigError, ToolServerError
from agentrl.tool import Tool, ToolError, _check_value

__all__ = ["MCPToolServer", "MCPTool"]

_PLAIN_TYPES = {"string", "integer", "number", "boolean", "array", "object"}


def _content_text(result: Any) -> str:
    """The text of a ``CallToolResult``: its text blocks, else its structured content."""
    parts = []
    for block in getattr(result, "content", None) or []:
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(block, 'type', 'content')}]")
    if not parts and getattr(result, "structured_content", None) is not None:
        parts.append(json.dumps(result.structured_content, default=str))
    return "\n".join(parts)


def _fail_if_pending(ready: concurrent.futures.Future[Any], runner: concurrent.futures.Future[Any]) -> None:
    """The connection task ended before the tools were listed: pass its error on."""
    if ready.done():
        return
    exc = None if runner.cancelled() else runner.exception()
    try:
        ready.set_exception(ToolServerError(f"the MCP server connection ended before listing its tools: {exc!r}"))
    except concurrent.futures.InvalidStateError:
        pass


class MCPTool(Tool):
    """One tool of an MCP server (its schema as the server gives it; calls go to the server)."""

    def __init__(self, server: MCPToolServer, name: str, description: str | None,
                 input_schema: Mapping[str, Any]) -> None:
        self.server = server
        self.name = name
        self.description = description or f"MCP tool {name}"
        params = dict(input_schema) if isinstance(input_schema, Mapping) else {}
        params.setdefault("type", "object")
        params.setdefault("properties", {})
        self.parameters = params
        self.fn = self._call

    def _call(self, **arguments: Any) -> str:
        return self.server.call(self.name, arguments)

    def validate(self, arguments: Any) -> str | None:
        if not isinstance(arguments, dict):
            return f"arguments must be a JSON object, got {type(arguments).__name__}"
        props = self.parameters.get("properties") or {}
        missing = [k for k in self.parameters.get("required") or [] if k not in arguments]
        if missing:
            return f"missing required argument(s): {', '.join(missing)}"
        if self.parameters.get("additionalProperties") is False:
            extra = [k for k in arguments if k not in props]
            if extra:
                return f"unexpected argument(s): {', '.join(map(str, extra))}; valid arguments: {', '.join(props) or '(none)'}"
        for key, value in arguments.items():
            schema = props.get(key)
            if isinstance(schema, Mapping) and schema.get("type") in _PLAIN_TYPES and value is not None:
                if err := _check_value(value, {"type": schema["type"]}, key):
                    return err
        return None  # deeper rules are the server's to check (its errors come back as messages)


class MCPToolServer:
    """A connection to one MCP server, opened at construction and kept until :meth:`close`.

    Args:
        server: a URL (``http://host:port/mcp``: streamable HTTP) or a command line (a list
            of strings, or one string split on spaces: a stdio server started as a
            subprocess).
        env: environment variables of a stdio server (None: the MCP SDK's default set).
        timeout_s: the longest one tool call may take.
        start_timeout_s: the longest connecting and listing the tools may take.

    Raises:
        ToolServerError: the server cannot be started or reached, or lists no valid tools.
    """

    def __init__(self, server: str | Sequence[str], *, env: Mapping[str, str] | None = None,
                 timeout_s: float = 30.0, start_timeout_s: float = 60.0) -> None:
        from mcp import StdioServerParameters

        if isinstance(server, str) and server.startswith(("http://", "https://")):
            self.target: Any = server
        else:
            argv = server.split() if isinstance(server, str) else list(server)
            if not argv or not all(isinstance(a, str) and a for a in argv):
                raise ConfigError(f"an MCP server is a URL or a command line, got {server!r}")
            self.target = StdioServerParameters(command=argv[0], args=argv[1:],
                                                env=dict(env) if env is not None else None)
        self.timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="agentrl-mcp", daemon=True)
        self._thread.start()
        self._client: Any = None
        self._stop: asyncio.Event | None = None
        self._lock = threading.Lock()
        ready: concurrent.futures.Future[list[Any]] = concurrent.futures.Future()
        self._runner = asyncio.run_coroutine_threadsafe(self._run(ready), self._loop)
        self._runner.add_done_callback(lambda f: _fail_if_pending(ready, f))
        try:
            listed = ready.result(timeout=start_timeout_s)
        except concurrent.futures.TimeoutError:
            self.close()
            raise ToolServerError(f"MCP server {server!r} did not answer within {start_timeout_s:g} s") from None
        except ToolServerError:
            self.close()
            raise
        self._tools = [MCPTool(self, t.name, t.description, t.input_schema) for t in listed]

    async def _run(self, ready: concurrent.futures.Future[list[Any]]) -> None:
        from mcp import Client

        self._stop = asyncio.Event()
        try:
            async with Client(self.target, read_timeout_seconds=self.timeout_s) as client:
                tools, cursor = [], None
                while True:
                    page = await client.list_tools(cursor=cursor)
                    tools += page.tools
                    cursor = page.next_cursor
                    if not cursor:
                        break
                self._client = client
                ready.set_result(tools)
                await self._stop.wait()
        except (OSError, RuntimeError, ValueError, TimeoutError, BaseExceptionGroup) as exc:
            if not ready.done():
                ready.set_exception(ToolServerError(f"cannot start or reach the MCP server: {exc!r}"))
        finally:
            self._client = None

    def tools(self) -> list[Tool]:
        """The server's tools, as agentrl tools (in the server's order)."""
        return list(self._tools)

    def call(self, name: str, arguments: Mapping[str, Any]) -> str:
        """Call tool ``name``; its text, or :class:`ToolError` with the server's error text."""
        from mcp.shared.exceptions import MCPError

        with self._lock:
            if self._client is None:
                raise ToolServerError("the MCP server connection is closed")
            future = asyncio.run_coroutine_threadsafe(
                self._client.call_tool(name, dict(arguments)), self._loop)
            try:
                result = future.result(timeout=self.timeout_s + 5)
            except MCPError as exc:
                raise ToolError(f"{name}: {exc}") from None
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise ToolError(f"{name}: no answer from the tool server within {self.timeout_s:g} s") from None
            except (OSError, RuntimeError, BaseExceptionGroup) as exc:
                raise ToolServerError(f"the MCP server connection failed during {name}: {exc!r}") from exc
        text = _content_text(result)
        if result.is_error:
            raise ToolError(text or f"{name} failed")
        return text

    def close(self) -> None:
        """Close the connection (a stdio server's process ends) and stop the loop."""
        if self._loop.is_closed():
            return
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        try:
            self._runner.result(timeout=15)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            self._runner.cancel()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=15)
        self._loop.close()

    def __enter__(self) -> MCPToolServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
