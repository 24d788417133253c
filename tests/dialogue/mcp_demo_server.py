"""A small MCP server for the tests: a key-value store with a failing tool.

Run as ``python mcp_demo_server.py`` (stdio) or ``python mcp_demo_server.py http PORT``.
"""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("agentrl-test")
STORE: dict[str, str] = {}


@server.tool()
def put(key: str, value: str) -> str:
    """Store a value under a key."""
    STORE[key] = value
    return f"stored {key}"


@server.tool()
def get(key: str) -> str:
    """Read the value stored under a key."""
    if key not in STORE:
        raise ToolError(f"no value stored under {key!r}")
    return STORE[key]


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
