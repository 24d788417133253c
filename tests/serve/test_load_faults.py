"""Load and faults against a real ``agentrl serve`` subprocess on loopback: 100 concurrent
sessions with nothing lost; the server killed mid-episode and restarted (clear errors, the
episodes in flight recorded as failed, the collector goes on)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import agentrl
from agentrl.bench.serve import run_load
from agentrl.errors import RemoteSessionLostError, RemoteUnavailableError
from agentrl.policy import FakePolicy
from agentrl.remote import RemoteEnv
from agentrl.rollout import RolloutConfig, RolloutStream

from .conftest import CALC, ServerProcess


def test_load_100_concurrent_sessions_nothing_lost(tmp_path: Path) -> None:
    first, second = run_load("ws", sessions=100, think_ms=20, log=tmp_path / "server.log",
                             rounds=2, settle_s=0.5)
    for result in (first, second):
        assert result.errors == []
        assert result.peak_open == 100  # all held at once
        assert result.episodes_ok == 100 and result.lost == 0
        assert result.steps == 200  # two oracle steps each
    assert second.rss_after_mb < first.rss_after_mb + 10  # memory does not grow per round


def test_server_killed_mid_episode_and_restarted(server_process: ServerProcess) -> None:
    server_process.start()
    env = RemoteEnv(server_process.url, CALC, retries=1, backoff_s=0.05)
    env.reset(seed=0)
    server_process.kill()
    t0 = time.monotonic()
    with pytest.raises(RemoteUnavailableError, match="cannot connect|connection lost"):
        env.step("<answer>1</answer>")
    assert time.monotonic() - t0 < 5  # a clear error, quickly
    server_process.start(port=server_process.port)  # restarted: the session is gone
    with pytest.raises(RemoteSessionLostError):
        env.step("<answer>1</answer>")
    messages, _ = env.reset(seed=0)  # a new session on the new server
    assert messages[1]["content"] == agentrl.make(CALC).unwrapped.reset(seed=0)[0][1]["content"]
    env.close()


def test_collector_goes_on_across_a_server_restart(server_process: ServerProcess,
                                                   tiny_tokenizer) -> None:
    server_process.start()

    def replies(prompt: str) -> str:
        return '<tool_call>{"name": "calculator", "arguments": {"expression": "6*7"}}</tool_call>' \
            if "<tool_response>" not in prompt else "<answer>42</answer>"

    policy = FakePolicy(tiny_tokenizer, replies, delay_s=0.4)
    config = RolloutConfig(max_turns=4, max_new_tokens=64, concurrency=4)

    def make_env() -> RemoteEnv:
        return agentrl.make(CALC, remote=server_process.url, retries=1, backoff_s=0.05)

    async def run() -> list:
        out = []
        async with RolloutStream(make_env, policy, config) as stream:
            stream.submit(0, count=4)
            await asyncio.sleep(0.2)  # all four reset, generating their first turn
            server_process.kill()
            for _ in range(4):
                out.append(await stream.__anext__())
            server_process.start(port=server_process.port)
            stream.submit(1, count=4)
            stream.close_input()
            out += [t async for t in stream]
        return out

    trajs = asyncio.run(run())
    assert len(trajs) == 8  # every episode accounted for
    failed, later = trajs[:4], trajs[4:]
    for t in failed:
        assert t.end_reason == "error" and t.success is False
        assert "RemoteUnavailableError" in t.error and server_process.url in t.error
    assert all(t.end_reason == "terminated" for t in later)
