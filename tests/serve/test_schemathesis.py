"""Schemathesis fuzzes the published OpenAPI schema on loopback: every reply is a documented
status with a body matching its schema, no 5xx, and the server stays healthy. Bounded: a
few examples per operation (the whole module runs in well under a minute)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agentrl.serve.cli import BackgroundServer
from agentrl.serve.sessions import ServerConfig

from .conftest import AUTH, CALC, TOKEN

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[BackgroundServer]:
    with BackgroundServer(ServerConfig(env_ids=(CALC,), port=0, token=TOKEN,
                                       max_sessions=64, max_body_bytes=64 * 1024)) as srv:
        yield srv


def _operations(url: str) -> list:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_fuzzed_requests_get_documented_replies(fuzz_server: BackgroundServer) -> None:
    operations = _operations(fuzz_server.url)
    labels = {op.label for op in operations}
    assert {"POST /v1/sessions", "POST /v1/sessions/{session_id}/step",
            "DELETE /v1/sessions/{session_id}", "GET /metrics"} <= labels
    calls = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
               | operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        @settings(max_examples=30, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case) -> None:
            response = case.call_and_validate(base_url=fuzz_server.url, headers=AUTH,
                                              checks=CHECKS, timeout=10)
            calls.append(response.status_code)

        fuzz()
    assert len(calls) >= 2 * len(operations)
    assert all(status < 500 for status in calls)


def test_server_healthy_after_fuzzing(fuzz_server: BackgroundServer) -> None:
    r = httpx.get(f"{fuzz_server.url}/v1/health", timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = httpx.post(f"{fuzz_server.url}/v1/sessions", json={"env_id": CALC, "seed": 0},
                   headers=AUTH, timeout=5)
    assert r.status_code in (201, 429)  # fuzzed creates may hold every slot until reaped
