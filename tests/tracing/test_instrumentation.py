"""The libraries configure_tracing instruments: Django (server spans; health checks left out), psycopg and
redis (spans inside a request or call; background polling dropped) and botocore."""

from __future__ import annotations

import os
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from calls import tracing
from tests.conftest import requires_postgres, requires_redis

pytestmark = pytest.mark.django_db


def server_spans(exporter: InMemorySpanExporter) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


def test_a_django_request_makes_a_server_span(spans: InMemorySpanExporter, client: Any) -> None:
    response = client.get("/admin/login/?next=/admin/")

    assert response.status_code == 200
    [span] = server_spans(spans)
    assert span.name == "GET admin/login/"
    assert span.parent is None
    assert span.attributes["http.status_code"] == 200
    assert span.attributes["http.route"] == "admin/login/"


async def test_an_asgi_request_makes_a_server_span(spans: InMemorySpanExporter, async_client: Any) -> None:
    """daphne serves Django over ASGI in the web and bridge images."""
    response = await async_client.get("/admin/login/")

    assert response.status_code == 200
    [span] = server_spans(spans)
    assert span.name == "GET admin/login/"
    assert span.attributes["http.status_code"] == 200


def test_an_incoming_xray_header_continues_the_trace(spans: InMemorySpanExporter, client: Any) -> None:
    """The ALB adds X-Amzn-Trace-Id; the request's span joins that trace."""
    header = "Root=1-6717a1b2-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1"

    client.get("/admin/login/", HTTP_X_AMZN_TRACE_ID=header)

    [span] = server_spans(spans)
    assert f"{span.context.trace_id:032x}" == "6717a1b20123456789abcdef01234567"
    assert f"{span.parent.span_id:016x}" == "53995c3f42cd8ad8"


def test_health_checks_make_no_spans(spans: InMemorySpanExporter, client: Any) -> None:
    assert client.get("/healthz").status_code == 200
    client.get("/readyz")

    assert server_spans(spans) == []


def test_background_polling_is_dropped_but_work_inside_a_call_is_kept(spans: InMemorySpanExporter) -> None:
    """Root spans of the redis/psycopg instrumentations are polling (channels_redis waits on BZPOPMIN)."""
    provider = tracing._provider
    assert provider is not None
    redis_tracer = provider.get_tracer("opentelemetry.instrumentation.redis")

    with redis_tracer.start_as_current_span("BZPOPMIN", kind=SpanKind.CLIENT):
        pass
    assert spans.get_finished_spans() == ()

    with tracing.call_span("call.end"), redis_tracer.start_as_current_span("EVALSHA", kind=SpanKind.CLIENT):
        pass
    assert sorted(s.name for s in spans.get_finished_spans()) == ["EVALSHA", "call.end"]


def test_botocore_calls_are_client_spans(spans: InMemorySpanExporter) -> None:
    ecs = boto3.client("ecs", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    with Stubber(ecs) as stub, tracing.call_span("call.start"):
        stub.add_response("update_task_protection", {"protectedTasks": [], "failures": []})
        ecs.update_task_protection(cluster="voiceops", tasks=["task-1"], protectionEnabled=True)

    aws = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    [call] = aws
    assert call.name == "ECS.UpdateTaskProtection"
    assert call.attributes["rpc.service"] == "ECS"
    assert call.parent is not None


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_postgres_queries_are_children_of_the_request(spans: InMemorySpanExporter, admin_client: Any) -> None:
    from django.db import connection

    connection.close()  # connections made before tracing was configured are not instrumented

    assert admin_client.get("/admin/calls/call/").status_code == 200

    [server] = server_spans(spans)
    queries = [s for s in spans.get_finished_spans() if s.attributes.get("db.system") == "postgresql"]
    assert queries, "no psycopg spans"
    assert all(q.context.trace_id == server.context.trace_id for q in queries)
    # Statements yes, their parameters no: the session lookup must not carry the session key.
    session_key = admin_client.cookies["sessionid"].value
    assert any("django_session" in q.attributes.get("db.statement", "") for q in queries)
    assert all(session_key not in q.to_json() for q in queries)


@requires_redis
async def test_redis_commands_inside_a_call_step(spans: InMemorySpanExporter) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(os.environ["REDIS_URL"])
    try:
        await client.ping()  # outside any call: background noise, dropped
        with tracing.call_span("call.start"):
            await client.set("voiceops:test:tracing", "+14155550123", ex=5)
    finally:
        await client.aclose()

    redis_spans = [s for s in spans.get_finished_spans() if s.attributes.get("db.system") == "redis"]
    assert [s.name for s in redis_spans] == ["SET"]
    assert "+14155550123" not in redis_spans[0].to_json()  # command arguments are not recorded
