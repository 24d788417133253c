"""The env server's REST and WebSocket API on loopback: episodes equal local ones, sequence
numbers (a retried step is not applied twice), limits (401, 413, 422, 429), reaping, metrics."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from agentrl.registry import make
from agentrl.serve.cli import BackgroundServer
from agentrl.serve.sessions import ServerConfig

from .conftest import AUTH, CALC, TOKEN


def _local(seed: int):
    env = make(CALC).unwrapped
    messages, info = env.reset(seed=seed)
    return env, messages, info


def test_rest_episode_matches_local_env(server: BackgroundServer) -> None:
    with httpx.Client(base_url=server.url, headers=AUTH) as c:
        r = c.post("/v1/sessions", json={"env_id": CALC, "seed": 11})
        assert r.status_code == 201
        body = r.json()
        local, messages, info = _local(11)
        assert body["messages"] == messages and body["info"] == info and body["seq"] == 0
        sid = body["session_id"]
        for seq in (1, 2):
            action = local.oracle_action()
            expected = local.step(action)
            got = c.post(f"/v1/sessions/{sid}/step", json={"seq": seq, "action": action}).json()
            assert (got["messages"], got["reward"], got["terminated"], got["truncated"],
                    got["info"]) == tuple(expected)
        assert got["reward"] == 1.0 and got["terminated"]
        # A new episode on the same session (reset), then close.
        r = c.post(f"/v1/sessions/{sid}/reset", json={"seq": 3, "seed": 12})
        assert r.status_code == 200 and r.json()["messages"] == _local(12)[1]
        assert c.get(f"/v1/sessions/{sid}").json()["seq"] == 3
        assert c.delete(f"/v1/sessions/{sid}").status_code == 204
        assert c.delete(f"/v1/sessions/{sid}").status_code == 404


def test_retried_seq_returns_stored_reply_and_is_not_applied_twice(server: BackgroundServer) -> None:
    with httpx.Client(base_url=server.url, headers=AUTH) as c:
        sid = c.post("/v1/sessions", json={"env_id": CALC, "seed": 3}).json()["session_id"]
        call = '<tool_call>{"name": "calculator", "arguments": {"expression": "2+2"}}</tool_call>'
        first = c.post(f"/v1/sessions/{sid}/step", json={"seq": 1, "action": call})
        again = c.post(f"/v1/sessions/{sid}/step", json={"seq": 1, "action": call})
        assert first.content == again.content  # byte-identical stored reply
        assert first.json()["info"]["turn"] == 1
        env = server.manager.sessions[sid].env.unwrapped
        assert env.turn == 1 and len(env.calls) == 1  # applied once
        # Out of order: a gap and a stale seq are refused with the expected seq.
        for seq in (3, 0):
            r = c.post(f"/v1/sessions/{sid}/step", json={"seq": seq, "action": call})
            assert r.status_code == 409
            assert r.json()["error"] == {**r.json()["error"], "code": "out_of_order",
                                         "expected_seq": 2}
        assert env.turn == 1
        nxt = c.post(f"/v1/sessions/{sid}/step", json={"seq": 2, "action": call})
        assert nxt.status_code == 200 and nxt.json()["info"]["turn"] == 2
        # A retried create (same client-chosen id) returns the stored reply, no new session.
        n = len(server.manager.sessions)
        req = {"env_id": CALC, "seed": 5, "session_id": "client-chosen-1"}
        a, b = c.post("/v1/sessions", json=req), c.post("/v1/sessions", json=req)
        assert a.status_code == b.status_code == 201 and a.content == b.content
        assert len(server.manager.sessions) == n + 1
        c.delete(f"/v1/sessions/{sid}")
        c.delete("/v1/sessions/client-chosen-1")


def test_env_errors_come_back_as_4xx_and_the_session_goes_on(server: BackgroundServer) -> None:
    with httpx.Client(base_url=server.url, headers=AUTH) as c:
        r = c.post("/v1/sessions", json={"env_id": CALC, "options": {"task_id": "x"}})
        assert r.status_code == 400 and r.json()["error"]["type"] == "TaskNotFoundError"
        r = c.post("/v1/sessions", json={"env_id": "agentrl/Nope-v0"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_env"
        r = c.post("/v1/sessions", json={"env_id": CALC, "env_kwargs": {"difficulty": 2}})
        assert r.status_code == 403
        sid = c.post("/v1/sessions", json={"env_id": CALC, "seed": 1}).json()["session_id"]
        c.post(f"/v1/sessions/{sid}/step", json={"seq": 1, "action": "<answer>0</answer>"})
        r = c.post(f"/v1/sessions/{sid}/step", json={"seq": 2, "action": "more"})
        assert r.status_code == 409 and r.json()["error"]["type"] == "EpisodeEndedError"
        r = c.post(f"/v1/sessions/{sid}/reset", json={"seq": 3, "seed": 2})
        assert r.status_code == 200  # the error used seq 2; the session goes on
        c.delete(f"/v1/sessions/{sid}")


@pytest.mark.parametrize("body", [
    b"{not json",
    b'{"env_id": "agentrl/Calculator-v0", "seed": "1"}',  # strict: no str -> int
    b'{"env_id": "agentrl/Calculator-v0", "surprise": 1}',  # extra field
    b'{"env_id": "agentrl/Calculator-v0", "seed": -1}',
    b"[]",
])
def test_malformed_requests_get_422_and_server_stays_healthy(server: BackgroundServer,
                                                             body: bytes) -> None:
    before = len(server.manager.sessions)
    r = httpx.post(f"{server.url}/v1/sessions", content=body,
                   headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    assert len(server.manager.sessions) == before
    assert httpx.get(f"{server.url}/v1/health").json()["status"] == "ok"


def test_oversized_bodies_get_413(server: BackgroundServer) -> None:
    big = json.dumps({"seq": 1, "action": "x" * 70_000}).encode()  # limit: 64 KiB
    r = httpx.post(f"{server.url}/v1/sessions/abcdefgh/step", content=big,
                   headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"

    def chunks():  # no content-length: the guard counts the streamed body
        for _ in range(10):
            yield b"x" * 10_000

    r = httpx.post(f"{server.url}/v1/sessions", content=chunks(), headers=AUTH)
    assert r.status_code == 413
    assert httpx.get(f"{server.url}/v1/health").status_code == 200


def test_token_checked_before_any_work(server: BackgroundServer) -> None:
    created = dict(server.manager.counters)
    n = len(server.manager.sessions)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = httpx.post(f"{server.url}/v1/sessions", json={"env_id": CALC}, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert httpx.get(f"{server.url}/metrics", headers=headers).status_code == 401
    assert len(server.manager.sessions) == n
    key = ("agentrl_serve_sessions_created_total", CALC)
    assert server.manager.counters.get(key) == created.get(key)
    assert httpx.get(f"{server.url}/v1/health").status_code == 200  # open for health checks

    async def ws_without_token() -> int:
        try:
            async with websockets.connect(server.url.replace("http", "ws") + "/v1/ws"):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(ws_without_token()) == 401


def test_websocket_session_and_bad_frames(server: BackgroundServer) -> None:
    async def run() -> None:
        url = server.url.replace("http", "ws") + "/v1/ws"
        async with websockets.connect(url, additional_headers=AUTH) as ws:
            async def call(frame: object) -> dict:
                await ws.send(frame if isinstance(frame, str) else json.dumps(frame))
                return json.loads(await ws.recv())

            assert (await call({"op": "step", "seq": 1, "action": "x"}))["status"] == 404
            assert (await call("garbage"))["status"] == 422
            assert (await call({"op": "launch"}))["status"] == 422
            created = await call({"op": "create", "env_id": CALC, "seed": 4})
            assert created["status"] == 201 and created["body"]["messages"] == _local(4)[1]
            local = _local(4)[0]
            reply = await call({"op": "step", "seq": 1, "action": local.oracle_action()})
            assert reply["status"] == 200 and reply["body"]["info"]["turn"] == 1
            assert (await call({"op": "create", "env_id": CALC}))["status"] == 409
            sid = created["body"]["session_id"]
        # Disconnected without close: the session survives; a new connection re-attaches.
        async with websockets.connect(url, additional_headers=AUTH) as ws:
            await ws.send(json.dumps({"op": "attach", "session_id": sid}))
            assert json.loads(await ws.recv())["status"] == 200
            await ws.send(json.dumps({"op": "step", "seq": 1, "action": "ignored"}))  # retry
            assert json.loads(await ws.recv())["body"] == reply["body"]
            await ws.send(json.dumps({"op": "close"}))
            assert json.loads(await ws.recv())["status"] == 204
        assert sid not in server.manager.sessions

    asyncio.run(run())


def test_max_sessions_429_retry_after_and_idle_reaping() -> None:
    config = ServerConfig(env_ids=(CALC,), port=0, max_sessions=3, idle_timeout_s=0.6)
    with BackgroundServer(config) as srv, httpx.Client(base_url=srv.url) as c:
        sids = [c.post("/v1/sessions", json={"env_id": CALC}).json()["session_id"]
                for _ in range(3)]
        r = c.post("/v1/sessions", json={"env_id": CALC})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["code"] == "too_many_sessions"
        c.delete(f"/v1/sessions/{sids[0]}")
        assert c.post("/v1/sessions", json={"env_id": CALC}).status_code == 201

        async def ws_leaves_without_close() -> None:  # a client that just goes away
            async with websockets.connect(srv.url.replace("http", "ws") + "/v1/ws") as ws:
                pass
            del ws

        asyncio.run(ws_leaves_without_close())
        deadline = time.monotonic() + 10
        while srv.manager.sessions and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not srv.manager.sessions  # all reaped (no operation for 0.6 s)
        text = c.get("/metrics").text
        assert 'agentrl_serve_sessions_closed_total{reason="idle"} 3' in text
        assert 'agentrl_serve_rejected_total{reason="too_many_sessions"} 1' in text
        assert "agentrl_serve_sessions 0" in text
        assert c.get(f"/v1/sessions/{sids[1]}").status_code == 404


def test_envs_health_metrics_and_openapi(server: BackgroundServer) -> None:
    with httpx.Client(base_url=server.url, headers=AUTH) as c:
        assert c.get("/v1/envs").json() == {"envs": [CALC, "agentrl/GuessNumber-v0"]}
        health = c.get("/v1/health").json()
        assert health["status"] == "ok" and health["max_sessions"] == 4096
        metrics = c.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "# TYPE agentrl_serve_env_seconds histogram" in metrics.text
        schema = httpx.get(f"{server.url}/openapi.json").json()
        step = schema["paths"]["/v1/sessions/{session_id}/step"]["post"]["responses"]
        assert {"200", "401", "404", "409", "413", "422"} <= set(step)


class _Crashy:
    """An env whose step raises a bug (not an agentrl error): the session is closed."""

    closed = 0

    def reset(self, *, seed=None, options=None):
        return [{"role": "user", "content": "hi"}], {"task_id": None, "success": None}

    def step(self, action):
        if action == "crash":
            raise ZeroDivisionError("a bug in the env")
        return [], 0.5, False, False, {"when": object()}  # a non-JSON info entry is dropped

    def close(self):
        _Crashy.closed += 1


def test_env_failure_is_500_and_closes_only_that_session_threads_mode() -> None:
    config = ServerConfig(env_ids=("test/Crashy-v0",), port=0, env_threads=2)
    with BackgroundServer(config, make_env=lambda env_id, **kw: _Crashy()) as srv, \
            httpx.Client(base_url=srv.url) as c:
        a = c.post("/v1/sessions", json={"env_id": "test/Crashy-v0"}).json()["session_id"]
        b = c.post("/v1/sessions", json={"env_id": "test/Crashy-v0"}).json()["session_id"]
        ok = c.post(f"/v1/sessions/{a}/step", json={"seq": 1, "action": "fine"})
        assert ok.status_code == 200 and ok.json()["info"] == {} and ok.json()["reward"] == 0.5
        r = c.post(f"/v1/sessions/{a}/step", json={"seq": 2, "action": "crash"})
        assert r.status_code == 500 and r.json()["error"]["code"] == "env_failed"
        assert "ZeroDivisionError" in r.json()["error"]["message"] and _Crashy.closed == 1
        assert c.get(f"/v1/sessions/{a}").status_code == 404
        assert c.post(f"/v1/sessions/{b}/step", json={"seq": 1, "action": "x"}).status_code == 200
        assert 'closed_total{reason="error"} 1' in c.get("/metrics").text
