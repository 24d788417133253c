"""Tools from MCP servers (our own small server, over stdio and streamable HTTP) in a ToolEnv."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agentrl import Task, ToolEnv
from agentrl.errors import ToolServerError
from agentrl.mcp_tools import MCPToolServer
from agentrl.parsers import ToolCall

SERVER = str(Path(__file__).with_name("mcp_demo_server.py"))


@pytest.fixture(scope="module")
def stdio_server():
    server = MCPToolServer([sys.executable, SERVER])
    yield server
    server.close()


class KeyValueEnv(ToolEnv):
    """Store a value with the MCP server's ``put``, read it back with ``get``, answer it."""

    def __init__(self, tools: list[Any], **kwargs: Any):
        super().__init__(tools, max_turns=6, **kwargs)

    def sample_task(self, rng, options):
        value = f"v{int(rng.integers(1000))}"
        return Task(prompt=f"Store {value} under 'k', read it back and answer it.", answer=value)

    def grade(self, task, answer):
        return float(answer == task.answer)


def test_server_tools_become_tool_schemas(stdio_server):
    schemas = {t.name: t.schema["function"] for t in stdio_server.tools()}
    assert set(schemas) == {"put", "get", "add"}
    assert schemas["add"]["description"] == "Add two integers."
    assert schemas["add"]["parameters"]["properties"]["a"]["type"] == "integer"
    assert schemas["add"]["parameters"]["required"] == ["a", "b"]


def test_tool_env_episode_with_mcp_tools_and_errors_as_messages(stdio_server):
    env = KeyValueEnv(stdio_server.tools())
    obs, _ = env.reset(seed=1)
    assert '"name": "put"' in obs[0]["content"]
    value = env.task.answer
    render = env.parser.render
    msgs, reward, term, trunc, info = env.step(render([ToolCall("get", {"key": "missing"}),
                                                       ToolCall("add", {"a": "two", "b": 1}),
                                                       ToolCall("add", {"a": 2})]))
    assert [m["content"] for m in msgs] == [
        "Error: Error executing tool get: no value stored under 'missing'",
        'Error: invalid arguments for add: a must be of type integer, got str "two"',
        "Error: invalid arguments for add: missing required argument(s): b"]
    assert [c["error_kind"] for c in info["tool_calls"]] == ["tool_error", "bad_arguments", "bad_arguments"]
    msgs, *_ = env.step(render([ToolCall("put", {"key": "k", "value": value}), ToolCall("add", {"a": 2, "b": 40})]))
    assert [m["content"] for m in msgs] == ["stored k", "42"]
    msgs, *_ = env.step(render([ToolCall("get", {"key": "k"})]))
    assert msgs[0]["content"] == value
    _, reward, term, _, info = env.step(f"<answer>{msgs[0]['content']}</answer>")
    assert term and reward == 1.0 and info["success"] is True
    # an unknown tool on the server side (bypassing the env's check) is a tool error too
    with pytest.raises(Exception, match="Unknown tool") as err:
        stdio_server.call("nope", {})
    assert type(err.value).__name__ == "ToolError"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_streamable_http_server(tmp_path):
    port = _free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen([sys.executable, SERVER, "http", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.2)
        with MCPToolServer(f"http://127.0.0.1:{port}/mcp") as server:
            add = next(t for t in server.tools() if t.name == "add")
            assert add.run({"a": 20, "b": 22}).content == "42"
            get = next(t for t in server.tools() if t.name == "get")
            out = get.run({"key": "nothing"})
            assert not out.ok and "no value stored under 'nothing'" in out.content
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_unstartable_server_is_a_clear_error():
    t = time.monotonic()
    with pytest.raises(ToolServerError, match="MCP server"):
        MCPToolServer([sys.executable, "-c", "import sys; sys.exit(3)"], start_timeout_s=20)
    assert time.monotonic() - t < 20
