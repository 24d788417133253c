"""OpenAIPolicy against a misbehaving HTTP server on loopback: retries, timeouts, clear errors."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agentrl.errors import PolicyServerError, PromptTooLongError
from agentrl.policy import OpenAIPolicy, SamplingParams

CONTEXT_ERROR = "This model's maximum context length is 64 tokens. However, your prompt contains 70 input tokens."


class Scripted(ThreadingHTTPServer):
    """Answers POSTs with the next behaviour of ``script`` (the last one repeats)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.script: list[str] = ["ok"]
        self.bodies: list[dict[str, Any]] = []
        self.inflight = 0
        self.max_inflight = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def next_behaviour(self) -> str:
        with self.lock:
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]


def _completion(n: int) -> dict[str, Any]:
    choice = {"text": "hi", "token_ids": [5, 6], "finish_reason": "stop",
              "logprobs": {"token_logprobs": [-0.25, -1.5]}}  # fmt: skip
    return {"choices": [{**choice, "index": i} for i in range(n)]}


class Handler(BaseHTTPRequestHandler):
    server: Scripted

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # /v1/models
        self._send(200, json.dumps({"data": [{"id": "fake-model", "max_model_len": 64}]}).encode())

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv = self.server
        with srv.lock:
            srv.bodies.append(body)
            srv.inflight += 1
            srv.max_inflight = max(srv.max_inflight, srv.inflight)
        try:
            self._behave(srv.next_behaviour(), body)
        finally:
            with srv.lock:
                srv.inflight -= 1

    def _behave(self, what: str, body: dict[str, Any]) -> None:
        n = int(body.get("n", 1))
        if what == "ok":
            self._send(200, json.dumps(_completion(n)).encode())
        elif what.startswith("sleep"):  # e.g. sleep0.2: a slow but correct server
            time.sleep(float(what[5:]))
            self._send(200, json.dumps(_completion(n)).encode())
        elif what == "503":
            self._send(503, b'{"error": {"message": "overloaded"}}')
        elif what == "429":
            self._send(429, b'{"error": {"message": "slow down"}}', {"Retry-After": "0"})
        elif what == "garbage":
            self._send(200, b"<html>not json at all")
        elif what == "context":
            self._send(400, json.dumps({"error": {"message": CONTEXT_ERROR, "code": 400}}).encode())
        elif what == "no_ids":
            self._send(200, json.dumps({"choices": [{"index": 0, "text": "hi", "finish_reason": "stop",
                                                     "logprobs": {"token_logprobs": [-0.25]}}]}).encode())  # fmt: skip
        elif what == "one_choice":
            self._send(200, json.dumps(_completion(1)).encode())
        else:
            raise AssertionError(what)


@pytest.fixture
def server() -> Iterator[Scripted]:
    srv = Scripted()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _policy(url: str, **kw: Any) -> OpenAIPolicy:
    kw.setdefault("backoff_s", 0.01)
    return OpenAIPolicy(url, model="fake-model", **kw)


def test_ok_request_body_and_parsing(server: Scripted) -> None:
    pol = _policy(server.url)
    params = SamplingParams(temperature=0.7, top_p=0.9, max_tokens=7, stop=("\n",), seed=3, n=2)
    gens = asyncio.run(pol.generate([1, 2, 3], params))
    assert [g.token_ids for g in gens] == [[5, 6], [5, 6]]
    assert (
        gens[0].logprobs == [-0.25, -1.5]
        and gens[0].text == "hi"
        and gens[0].finish_reason == "stop"
    )
    body = server.bodies[0]
    assert (
        body["prompt"] == [1, 2, 3] and body["return_token_ids"] is True and body["logprobs"] == 0
    )
    assert (body["model"], body["max_tokens"], body["temperature"], body["top_p"], body["n"]) == (
        "fake-model",
        7,
        0.7,
        0.9,
        2,
    )
    assert (body["stop"], body["seed"]) == (["\n"], 3)


def test_503_then_ok_is_retried(server: Scripted) -> None:
    server.script = ["503", "503", "ok"]
    gens = asyncio.run(_policy(server.url, max_retries=3).generate([1], SamplingParams()))
    assert gens[0].token_ids == [5, 6]
    assert len(server.bodies) == 3  # two failures, then success


def test_429_is_retried(server: Scripted) -> None:
    server.script = ["429", "ok"]
    gens = asyncio.run(_policy(server.url).generate([1], SamplingParams()))
    assert gens[0].token_ids == [5, 6] and len(server.bodies) == 2


def test_persistent_503_gives_up_after_retries(server: Scripted) -> None:
    server.script = ["503"]
    with pytest.raises(PolicyServerError, match=r"after 3 attempts.*HTTP 503"):
        asyncio.run(_policy(server.url, max_retries=2).generate([1], SamplingParams()))
    assert len(server.bodies) == 3


def test_server_down_is_a_clear_error_after_retries() -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pol = _policy(f"http://127.0.0.1:{port}", max_retries=2, backoff_s=0.05)
    start = time.monotonic()
    with pytest.raises(PolicyServerError, match=r"after 3 attempts.*cannot connect"):
        asyncio.run(pol.generate([1], SamplingParams()))
    assert time.monotonic() - start >= 0.05 + 0.1  # backed off 0.05 s, then 0.1 s


def test_slow_server_times_out(server: Scripted) -> None:
    server.script = ["sleep1.5"]
    start = time.monotonic()
    with pytest.raises(PolicyServerError, match="timed out after 0.3 s"):
        asyncio.run(
            _policy(server.url, timeout_s=0.3, max_retries=0).generate([1], SamplingParams())
        )
    assert time.monotonic() - start < 1.4


def test_garbage_is_not_retried(server: Scripted) -> None:
    server.script = ["garbage"]
    with pytest.raises(PolicyServerError, match="not JSON"):
        asyncio.run(_policy(server.url).generate([1], SamplingParams()))
    assert len(server.bodies) == 1


def test_context_error_becomes_prompt_too_long(server: Scripted) -> None:
    server.script = ["context"]
    with pytest.raises(PromptTooLongError, match="maximum context length"):
        asyncio.run(_policy(server.url).generate([1, 2], SamplingParams()))


def test_prompt_longer_than_served_context_fails_before_sending(server: Scripted) -> None:
    with pytest.raises(PromptTooLongError, match="64"):
        asyncio.run(_policy(server.url).generate(list(range(64)), SamplingParams()))
    assert server.bodies == []


def test_server_without_token_ids_is_refused(server: Scripted) -> None:
    server.script = ["no_ids"]
    with pytest.raises(PolicyServerError, match="token ids"):
        asyncio.run(_policy(server.url).generate([1], SamplingParams()))


def test_wrong_number_of_choices(server: Scripted) -> None:
    server.script = ["one_choice"]
    with pytest.raises(PolicyServerError, match="2 choice"):
        asyncio.run(_policy(server.url).generate([1], SamplingParams(n=2)))


def test_concurrency_limit_and_reuse_across_event_loops(server: Scripted) -> None:
    server.script = ["sleep0.15"]
    pol = _policy(server.url, max_concurrency=2)

    async def burst() -> list[Any]:
        return await asyncio.gather(*[pol.generate([i + 1], SamplingParams()) for i in range(6)])

    assert len(asyncio.run(burst())) == 6
    assert server.max_inflight == 2
    assert len(asyncio.run(burst())) == 6  # a second loop gets its own client
    assert len(server.bodies) == 12
