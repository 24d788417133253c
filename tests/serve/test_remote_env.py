"""RemoteEnv: the same episodes as a local env (sync and async, both transports), through the
collector as a local env would be, retries that never apply a step twice, clear errors."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading

import gymnasium as gym
import pytest

import agentrl
from agentrl.env import AsyncEnv
from agentrl.errors import (
    EpisodeEndedError,
    RemoteEnvError,
    RemoteProtocolError,
    RemoteSessionLostError,
    RemoteUnavailableError,
    ResetNeededError,
    TaskNotFoundError,
)
from agentrl.policy import FakePolicy
from agentrl.remote import RemoteEnv
from agentrl.rollout import RolloutConfig, collect_sync
from agentrl.serve import client as client_mod
from agentrl.serve.cli import BackgroundServer

from .conftest import CALC, TOKEN


def _oracle_episode(env, seed: int) -> list:
    local = agentrl.make(CALC).unwrapped
    out = [env.reset(seed=seed), local.reset(seed=seed)]
    while True:
        action = local.oracle_action()
        remote, mine = env.step(action), local.step(action)
        out += [remote, mine]
        if mine[2] or mine[3]:
            return out


@pytest.mark.parametrize("transport", ["ws", "http"])
def test_sync_episode_equals_local(server: BackgroundServer, transport: str) -> None:
    env = agentrl.make(CALC, remote=server.url, token=TOKEN, transport=transport)
    assert isinstance(env, RemoteEnv) and isinstance(env, AsyncEnv)
    for seed in (0, 1):  # the second episode resets the same session
        out = _oracle_episode(env, seed)
        for remote, local in zip(out[::2], out[1::2], strict=True):
            assert tuple(remote) == tuple(local)
        assert out[-1][1] == 1.0
    sid = env.session_id
    with pytest.raises(EpisodeEndedError):
        env.step("after the end")
    env.close()
    assert sid not in server.manager.sessions


def test_gym_make_async_use_and_errors_as_local_classes(server: BackgroundServer) -> None:
    env = gym.make("agentrl/Remote-v0", url=server.url, env_id=CALC, token=TOKEN)
    assert type(env) is RemoteEnv  # bare: the collector sees areset/astep

    async def run() -> None:
        with pytest.raises(ResetNeededError):
            await env.astep("x")
        messages, info = await env.areset(seed=2)
        assert messages == agentrl.make(CALC).unwrapped.reset(seed=2)[0]
        _, reward, terminated, _, info = await env.astep("<answer>-1</answer>")
        assert terminated and reward == 0.0 and info["success"] is False
        with pytest.raises(TaskNotFoundError):  # the server's error, as the local class
            await env.areset(options={"task_id": "nope"})
        await env.aclose()

    asyncio.run(run())
    # Used again from another event loop (sync API): reconnects transparently.
    env.reset(seed=3)
    env.close()


def test_collector_treats_remote_env_as_local(server: BackgroundServer, tiny_tokenizer) -> None:
    def replies(prompt: str) -> str:
        return '<tool_call>{"name": "calculator", "arguments": {"expression": "6*7"}}</tool_call>' \
            if prompt.count("<tool_response>") == 0 else "<answer>42</answer>"

    config = RolloutConfig(max_turns=4, max_new_tokens=64, concurrency=4)
    local = collect_sync(CALC, FakePolicy(tiny_tokenizer, replies), range(6), config)
    remote = collect_sync(lambda: agentrl.make(CALC, remote=server.url, token=TOKEN),
                          FakePolicy(tiny_tokenizer, replies), range(6), config)
    # The env id with env_kwargs {"remote": URL} (what `agentrl rollout --env-kwargs` gives).
    by_kwargs = collect_sync(CALC, FakePolicy(tiny_tokenizer, replies), range(6),
                             dataclasses.replace(config, env_kwargs={"remote": server.url,
                                                                     "token": TOKEN}))
    assert len(remote) == len(by_kwargs) == 6
    assert [t.token_ids for t in by_kwargs] == [t.token_ids for t in local]
    assert by_kwargs[0].env_id == local[0].env_id == CALC
    for a, b in zip(local, remote, strict=True):
        assert a.token_ids == b.token_ids and a.loss_mask == b.loss_mask
        assert [t.reward for t in a.turns] == [t.reward for t in b.turns]
        assert (a.end_reason, a.success, a.task_id) == (b.end_reason, b.success, b.task_id)
    assert all(t.end_reason == "terminated" for t in remote)


def test_lost_reply_is_retried_with_same_seq(server: BackgroundServer, monkeypatch) -> None:
    env = RemoteEnv(server.url, CALC, token=TOKEN, backoff_s=0.01)
    env.reset(seed=7)
    real = client_mod._WsTransport.call
    dropped = []

    async def lossy(self, frame):  # the step reaches the server, its reply is "lost"
        status, body = await real(self, frame)
        if frame.get("op") == "step" and not dropped:
            dropped.append(frame["seq"])
            raise client_mod._Retry("reply lost")
        return status, body

    monkeypatch.setattr(client_mod._WsTransport, "call", lossy)
    call = '<tool_call>{"name": "calculator", "arguments": {"expression": "1+1"}}</tool_call>'
    _, _, _, _, info = env.step(call)
    assert dropped == [1] and info["turn"] == 1
    server_env = server.manager.sessions[env.session_id].env.unwrapped
    assert server_env.turn == 1 and len(server_env.calls) == 1  # applied exactly once
    assert server.manager.counters[("agentrl_serve_retries_total", "step")] >= 1
    env.close()


def test_server_down_gives_clear_error_quickly() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for transport in ("ws", "http"):
        env = RemoteEnv(f"http://127.0.0.1:{port}", CALC, transport=transport, retries=1,
                        backoff_s=0.01)
        with pytest.raises(RemoteUnavailableError, match="2 attempts"):
            env.reset(seed=0)


def _fake_server(reply: bytes | None) -> tuple[int, threading.Event]:
    """A TCP server that answers every connection with ``reply`` (None: never answers)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    stop = threading.Event()

    def serve() -> None:
        conns = []
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            conns.append(conn)
            if reply is not None:
                conn.recv(65536)
                conn.sendall(reply)
                conn.close()
        for c in conns:
            c.close()
        sock.close()

    threading.Thread(target=serve, daemon=True).start()
    return sock.getsockname()[1], stop


@pytest.mark.parametrize("transport", ["ws", "http"])
def test_garbage_and_slow_servers(transport: str) -> None:
    garbage = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot json!"
    port, stop = _fake_server(garbage)
    try:
        env = RemoteEnv(f"http://127.0.0.1:{port}", CALC, transport=transport, retries=0)
        with pytest.raises(RemoteProtocolError):
            env.reset(seed=0)
    finally:
        stop.set()
    port, stop = _fake_server(None)  # accepts, never answers
    try:
        env = RemoteEnv(f"http://127.0.0.1:{port}", CALC, transport=transport, retries=1,
                        timeout_s=0.3, connect_timeout_s=0.3, backoff_s=0.01)
        with pytest.raises(RemoteUnavailableError):
            env.reset(seed=0)
    finally:
        stop.set()


def test_wrong_token_and_lost_session(server: BackgroundServer) -> None:
    with pytest.raises(RemoteEnvError, match="401|unauthorized"):
        RemoteEnv(server.url, CALC, token="wrong").reset(seed=0)
    env = RemoteEnv(server.url, CALC, token=TOKEN, transport="http")
    env.reset(seed=0)
    # The server forgets the session (as after a restart): a clear error, then a new session.
    asyncio.run_coroutine_threadsafe(
        server.manager.close(env.session_id), server.loop).result()
    with pytest.raises(RemoteSessionLostError):
        env.step("<answer>1</answer>")
    messages, _ = env.reset(seed=0)
    assert messages and env.session_id in server.manager.sessions
    env.close()


def test_task_ids_of_finite_envs_through_the_server() -> None:
    from agentrl.rollout import specs_for
    from agentrl.serve.config import ServerConfig

    humaneval = "agentrl/HumanEval-v0"
    with BackgroundServer(ServerConfig(env_ids=(CALC, humaneval), port=0)) as srv:
        remote = RemoteEnv(srv.url, humaneval)
        local = agentrl.make(humaneval)
        try:
            assert remote.task_ids() == local.unwrapped.task_ids() and len(remote.task_ids()) == 164
        finally:
            local.close()
        assert [s.task_id for s in specs_for(remote, episodes=3)] == remote.task_ids()[:3]
        assert RemoteEnv(srv.url, CALC).task_ids() is None
        with pytest.raises(RemoteEnvError, match="404"):
            RemoteEnv(srv.url, "agentrl/GuessNumber-v0").task_ids()


def test_remote_client_is_registered_but_not_listed_as_an_env() -> None:
    import gymnasium

    assert "agentrl/Remote-v0" in gymnasium.registry  # gymnasium.make works
    assert "agentrl/Remote-v0" not in [i.id for i in agentrl.list_envs()]  # not an env itself
